import { type JSONPath, visit } from "jsonc-parser";
import type { ConfigProblem } from "./config_error.ts";

/**
 * Finds keys written twice in one JSON object. JSON parsers keep the last
 * value and drop the first without a word, so a second `"Apps"` would
 * silently replace the first list.
 *
 * @returns one problem per repeated key, at the path of the repeat
 */
export function findDuplicateKeys(text: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const stack: Set<string>[] = [];
  visit(text, {
    onObjectBegin: () => {
      stack.push(new Set());
    },
    onObjectEnd: () => {
      stack.pop();
    },
    onObjectProperty: (key, _offset, _length, line, column, pathSupplier) => {
      const keys = stack.at(-1);
      if (keys === undefined) return;
      if (keys.has(key)) {
        problems.push({
          path: formatPath([...pathSupplier(), key]),
          message: `is written twice in one object (again at line ${
            line + 1
          }, column ${column + 1}): keep one`,
        });
      }
      keys.add(key);
    },
  }, { allowTrailingComma: true, disallowComments: false });
  return problems;
}

/** Formats a JSON path the way config problems show it: `Apps[0].Ports`. */
function formatPath(path: JSONPath): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text === "" ? part : `.${part}`;
  }
  return text;
}
