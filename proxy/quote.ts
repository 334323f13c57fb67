/**
 * Quoting of names and other config strings for messages, so that a control
 * character in a config file cannot act on the terminal that shows the
 * message.
 *
 * @module
 */

/**
 * Characters that a name must not contain: controls (C0, DEL and C1),
 * invisible format characters such as text direction overrides and
 * zero-width spaces, the Unicode line and paragraph separators, halves of
 * surrogate pairs, and spaces other than U+0020. In a log line, each can
 * forge a line break, make text read backwards, or make two names look
 * the same (`a b` with a no-break space).
 */
export const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]|(?! )\p{Zs}/u;

/**
 * Quotes `text` as JSON does, and also escapes the characters of
 * {@linkcode CONTROL} that JSON leaves as they are, which a terminal may act
 * on or display out of order.
 */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    new RegExp(CONTROL.source, "gu"),
    (c) =>
      Array.from(
        { length: c.length },
        (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`,
      ).join(""),
  );
}
