/**
 * Closes the TIME_WAIT sockets that earlier rows left in the benchmark's
 * network namespace, so that every row's short connections start from the
 * same state.
 *
 * Why it matters: a proxy's `connect(2)` to the echo server searches the
 * ephemeral range past the TIME_WAIT sockets of earlier connections to the
 * same address. Left alone, the state depends on the rows run in the minute
 * before. After the row without a proxy (about 50k connections per second),
 * the namespace contains `net.ipv4.tcp_max_tw_buckets` of them and makes no
 * more, so connects no longer search. HAProxy did 17.8k connections per
 * second in a fresh namespace and 22.7k right after an anyport row (Xeon VM,
 * Linux 6.18).
 */
import { runText } from "./_process.ts";

/**
 * Runs `ss -K state time-wait` in the current network namespace. The bench
 * runs inside a namespace of its own, so no other namespace's socket is
 * touched, and `ss` selects TIME_WAIT sockets only.
 *
 * @returns `undefined` when none is left, else what went wrong
 */
export async function clearTimeWait(): Promise<string | undefined> {
  const output = await runText("ss", ["-K", "-H", "-t", "state", "time-wait"]);
  if (output.startsWith("(cannot run")) return output;
  const left = await countTimeWait();
  if (left === 0) return undefined;
  return `${left} TIME_WAIT sockets were left after "ss -K"; the kernel ` +
    "may lack CONFIG_INET_DIAG_DESTROY, so short connections depend on " +
    "the rows run just before";
}

async function countTimeWait(): Promise<number> {
  const output = await runText("ss", ["-H", "-t", "-n", "state", "time-wait"]);
  return output === "" ? 0 : output.split("\n").length;
}
