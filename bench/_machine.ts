/** Description of the machine and the software versions under test. */
import { runText } from "./_process.ts";
import type { MachineInfo } from "./_results.ts";

function cpuModel(): string {
  try {
    const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
    return cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

function firstLine(text: string): string {
  return text.split("\n")[0]?.trim() ?? "";
}

/** Reads the CPU, kernel and versions of the tools that the benchmark runs. */
export async function readMachineInfo(): Promise<MachineInfo> {
  return {
    cpu: cpuModel(),
    cores: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    haproxy: firstLine(await runText("haproxy", ["-v"])),
    nginx: firstLine(await runText("nginx", ["-v"])),
    iperf3: firstLine(await runText("iperf3", ["--version"])),
    compiler: firstLine(await runText("cc", ["--version"])),
  };
}
