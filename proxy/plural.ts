/**
 * Formats a count with its noun, such as "1 app" or "3 apps". Covers the
 * nouns of anyport's messages, which all take a plain "s".
 */
export function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
