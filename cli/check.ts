import { readConfig } from "../proxy/config.ts";
import { ConfigError, formatProblem } from "../proxy/config_error.ts";
import { countPorts, mergeRanges } from "../proxy/ports.ts";
import { counted } from "../proxy/plural.ts";
import { withoutCall } from "../proxy/os_error.ts";
import type { FrontendMode } from "../proxy/settings.ts";

/**
 * Validates a config file and prints the result: a summary when it is
 * valid, every problem when it is not. Returns the exit code, 0 or 1.
 *
 * @param mode overrides the config's `Mode`, as `--mode` does for a run
 */
export async function checkConfig(
  path: string,
  mode?: FrontendMode,
): Promise<number> {
  try {
    const config = await readConfig(path, mode);
    const ports = countPorts(mergeRanges(config.apps.flatMap((a) => a.ports)));
    const targets = config.apps.reduce((n, a) => n + a.targets.length, 0);
    // deno-lint-ignore no-console
    console.log(
      `${path}: valid, ${counted(config.apps.length, "app")}, ${
        counted(ports, "port")
      }, ${counted(targets, "target")}, mode ${config.settings.mode}`,
    );
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) {
      // deno-lint-ignore no-console
      console.error(
        `${path}: ${counted(error.problems.length, "problem")}\n  ${
          error.problems.map(formatProblem).join("\n  ")
        }`,
      );
    } else {
      // deno-lint-ignore no-console
      console.error(`${path}: cannot read: ${withoutCall(error)}`);
    }
    return 1;
  }
}
