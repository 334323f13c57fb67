import { createScanner } from "jsonc-parser";

// Token kinds of jsonc-parser's scanner (its `SyntaxKind`, a const enum that
// an isolated module cannot import).
const OPEN_BRACE = 1;
const CLOSE_BRACE = 2;
const OPEN_BRACKET = 3;
const CLOSE_BRACKET = 4;
const EOF = 17;

/** Deepest point of a JSON text: its depth and where it is first reached. */
export interface Nesting {
  /** Arrays and objects open at that point. */
  depth: number;
  /** Line of the bracket or brace that reaches it, from 1. */
  line: number;
  /** Column of that bracket or brace, from 1. */
  column: number;
}

/**
 * Returns the deepest nesting of arrays and objects in `text`, read with a
 * scanner that does not recurse, so it works on text too deep for
 * jsonc-parser's `parse`, which recurses once per level and runs out of
 * stack: at 12,000 levels but not at 8,000 in Deno 2.9.6.
 */
export function deepestNesting(text: string): Nesting {
  const scanner = createScanner(text, true);
  const deepest: Nesting = { depth: 0, line: 1, column: 1 };
  let depth = 0;
  for (let kind = scanner.scan(); kind !== EOF; kind = scanner.scan()) {
    if (kind === OPEN_BRACE || kind === OPEN_BRACKET) {
      depth++;
      if (depth > deepest.depth) {
        deepest.depth = depth;
        deepest.line = scanner.getTokenStartLine() + 1;
        deepest.column = scanner.getTokenStartCharacter() + 1;
      }
    } else if (kind === CLOSE_BRACE || kind === CLOSE_BRACKET) {
      depth = Math.max(0, depth - 1);
    }
  }
  return deepest;
}
