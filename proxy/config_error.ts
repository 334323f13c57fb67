import { counted } from "./plural.ts";

/** One problem in a config file: where it is and what is wrong. */
export interface ConfigProblem {
  /** Location in the document, such as `Apps[1].Ports[2]`, or `""` for the root. */
  path: string;
  message: string;
}

/** Invalid config file. Carries every problem found, not only the first. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];

  constructor(source: string, problems: readonly ConfigProblem[]) {
    const lines = problems.map(formatProblem);
    super(
      `Invalid config "${source}": ${counted(problems.length, "problem")}\n  ${
        lines.join("\n  ")
      }`,
    );
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Formats a problem as `path: message`, or just the message at the root. */
export function formatProblem(problem: ConfigProblem): string {
  return problem.path === ""
    ? problem.message
    : `${problem.path}: ${problem.message}`;
}
