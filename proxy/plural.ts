/**
 * Formats a count with its noun, such as "1 app" or "3 apps". Covers the
 * nouns of anyport's messages, which all take a plain "s".
 */
export function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Joins the first `limit` items with commas and counts the rest, such as
 * "a, b and 3 more", so a log line stays short however long the list is.
 */
export function firstOf(items: readonly string[], limit: number): string {
  const head = items.slice(0, limit).join(", ");
  return items.length > limit
    ? `${head} and ${items.length - limit} more`
    : head;
}
