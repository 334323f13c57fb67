/**
 * One round over every row. Each proxy starts afresh and gets its warm-up.
 * Then the rows take turns in short slices of load, and every proxy that is
 * not being measured is stopped (SIGSTOP). Then each row runs bulk once.
 * Last, each proxy gets a fresh process for the memory figures.
 *
 * The turns are short because this kind of machine changes speed on its
 * own: on a 2-core VM the row without a proxy ran at 185k round trips per
 * second for half a minute and at 140k for the next 7 seconds. Rows measured
 * one after another for 5 s each caught those phases at random, and single
 * ratios to the baseline spread from 0.75x to 1.46x. Slices of a few seconds,
 * taken in turn, put every row into the same phases.
 */
import type { Contender } from "./_contenders.ts";
import {
  measureBulk,
  type MeasureContext,
  measureMemory,
  measureSlice,
  startProxy,
  stopProxy,
  warmUp,
} from "./_measure.ts";
import { type Service, treeThreads } from "./_process.ts";
import type { RowResult } from "./_results.ts";

/** A row of the benchmark with the results it collects. */
export interface RoundRow {
  contender: Contender;
  row: RowResult;
}

/** A row whose proxy (if any) runs during the round. */
interface Running extends RoundRow {
  proxy: Service | undefined;
  /** True once the proxy has exited, so the row sits out the round. */
  exited: boolean;
}

/**
 * Measures one round of `rows`, in the order given. Failures are appended
 * to the row's problems instead of being thrown.
 *
 * @param ensureBackends restarts a backend that exited, before each step
 */
export async function measureRound(
  rows: readonly RoundRow[],
  ctx: MeasureContext,
  ensureBackends: () => Promise<void>,
): Promise<void> {
  const running: Running[] = [];
  const { rounds, slices = 1 } = ctx.settings;
  const where = `round ${ctx.round}/${rounds}`;
  try {
    for (const { contender, row } of rows) {
      if (row.skipped) continue;
      ctx.log(`${where}: starting ${contender.label}`);
      try {
        await ensureBackends();
        const proxy = await startProxy(contender, ctx);
        const entry = { contender, row, proxy, exited: false };
        running.push(entry);
        await warmUp(contender, row, ctx);
        proxy?.signalTree("SIGSTOP");
      } catch (error) {
        fail(row, contender, ctx, error);
      }
    }
    for (let slice = 1; slice <= slices; slice++) {
      // Every other slice takes the rows backwards, so that no row always
      // follows the same one.
      const order = slice % 2 === 1 ? running : [...running].reverse();
      const sample = (ctx.round - 1) * slices + slice;
      for (const entry of order) {
        ctx.log(`${where}, slice ${slice}/${slices}: ${entry.contender.label}`);
        await takeTurn(
          entry,
          ctx,
          ensureBackends,
          () => measureSlice(entry.contender, entry.row, ctx, sample),
        );
      }
    }
    for (const entry of running) {
      ctx.log(`${where}, bulk: ${entry.contender.label}`);
      await takeTurn(entry, ctx, ensureBackends, async () => {
        await measureBulk(entry.contender, entry.row, ctx);
        if (entry.proxy) entry.row.threads = treeThreads(entry.proxy.pid);
      });
    }
  } finally {
    for (const { proxy, row } of running) {
      if (proxy) await stopProxy(proxy, row);
    }
  }

  for (const { contender, row } of rows) {
    if (row.skipped || !contender.start) continue;
    ctx.log(`${where}, memory: ${contender.label}`);
    try {
      await ensureBackends();
      await measureMemory(contender, row, ctx);
    } catch (error) {
      fail(row, contender, ctx, error);
    }
  }
}

/** Lets `entry`'s proxy run while `work` measures it, then stops it again. */
async function takeTurn(
  entry: Running,
  ctx: MeasureContext,
  ensureBackends: () => Promise<void>,
  work: () => Promise<void>,
): Promise<void> {
  if (entry.exited) return;
  const { proxy, row, contender } = entry;
  if (proxy?.exited) {
    entry.exited = true;
    fail(
      row,
      contender,
      ctx,
      `${proxy.name} exited with code ${proxy.exited.code} during the ` +
        `round: "${proxy.stderr}"`,
    );
    return;
  }
  proxy?.signalTree("SIGCONT");
  try {
    await ensureBackends();
    await work();
  } catch (error) {
    fail(row, contender, ctx, error);
  } finally {
    proxy?.signalTree("SIGSTOP");
  }
}

function fail(
  row: RowResult,
  contender: Contender,
  ctx: MeasureContext,
  error: unknown,
): void {
  const message = error instanceof Error ? error.message : String(error);
  row.problems.push(message);
  ctx.log(`${contender.label}: ${message}`);
}
