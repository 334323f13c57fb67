/**
 * The proxies of a run and the rounds measured on them. Each proxy starts
 * once and gets its warm-up. In each round the rows take turns in short
 * slices of load, and every proxy that is not being measured is stopped
 * (SIGSTOP). Then each row runs bulk once. Memory is measured apart, on
 * fresh processes.
 *
 * The turns are short because this kind of machine changes speed on its
 * own: on a 2-core VM the row without a proxy ran at 185k round trips per
 * second for half a minute and at 140k for the next 7 seconds. Rows measured
 * one after another for 5 s each caught those phases at random, and single
 * ratios to the baseline spread from 0.75x to 1.46x. Slices of a few seconds,
 * taken in turn, put every row into the same phases.
 *
 * The proxies run for the whole run, not one round, because anyport kept
 * getting faster for about 20 s of load after its start. With a fresh
 * process per round and 8 s of warm-up, its first two slices of short
 * connections in each round did a median 12.0k per second and its last two
 * 14.6k, while HAProxy did 14.3k and 14.2k.
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

/** A row whose proxy (if any) runs during the run. */
interface Running extends RoundRow {
  proxy: Service | undefined;
  /** True once the proxy has exited, so the row sits out the rest. */
  exited: boolean;
}

/** The running proxies of every row. */
export class RunningRows {
  readonly #running: Running[];
  readonly #ensureBackends: () => Promise<void>;

  private constructor(
    running: Running[],
    ensureBackends: () => Promise<void>,
  ) {
    this.#running = running;
    this.#ensureBackends = ensureBackends;
  }

  /**
   * Starts the proxy of each row in `rows` and warms it up, then stops it
   * with SIGSTOP. A row whose proxy fails to start gets the failure in its
   * problems and sits out the run.
   *
   * @param ensureBackends restarts a backend that exited, before each step
   */
  static async start(
    rows: readonly RoundRow[],
    ctx: MeasureContext,
    ensureBackends: () => Promise<void>,
  ): Promise<RunningRows> {
    const running: Running[] = [];
    const started = new RunningRows(running, ensureBackends);
    try {
      for (const { contender, row } of rows) {
        if (row.skipped) continue;
        ctx.log(`starting ${contender.label}`);
        try {
          await ensureBackends();
          const proxy = await startProxy(contender, ctx);
          running.push({ contender, row, proxy, exited: false });
          try {
            await warmUp(contender, row, ctx);
          } finally {
            // Stopped even after a failed warm-up, so that it cannot take
            // CPU from the rows measured next.
            proxy?.signalTree("SIGSTOP");
          }
        } catch (error) {
          fail(row, contender, ctx, error);
        }
      }
    } catch (error) {
      await started.stop();
      throw error;
    }
    return started;
  }

  /**
   * Measures one round: `settings.slices` slices of every row, then bulk.
   * `reverse` takes the rows backwards.
   */
  async measureRound(ctx: MeasureContext, reverse: boolean): Promise<void> {
    const { rounds, slices = 1 } = ctx.settings;
    const where = `round ${ctx.round}/${rounds}`;
    const rows = reverse ? [...this.#running].reverse() : this.#running;
    for (let slice = 1; slice <= slices; slice++) {
      // Every other slice takes the rows backwards, so that no row always
      // follows the same one.
      const order = slice % 2 === 1 ? rows : [...rows].reverse();
      const sample = (ctx.round - 1) * slices + slice;
      for (const entry of order) {
        ctx.log(`${where}, slice ${slice}/${slices}: ${entry.contender.label}`);
        await this.#takeTurn(
          entry,
          ctx,
          () => measureSlice(entry.contender, entry.row, ctx, sample),
        );
      }
    }
    for (const entry of rows) {
      ctx.log(`${where}, bulk: ${entry.contender.label}`);
      await this.#takeTurn(entry, ctx, async () => {
        await measureBulk(entry.contender, entry.row, ctx);
        if (entry.proxy) entry.row.threads = treeThreads(entry.proxy.pid);
      });
    }
  }

  /** Stops every proxy for good. */
  async stop(): Promise<void> {
    for (const { proxy, row } of this.#running) {
      if (proxy) await stopProxy(proxy, row);
    }
  }

  /** Lets `entry`'s proxy run while `work` measures it, then stops it again. */
  async #takeTurn(
    entry: Running,
    ctx: MeasureContext,
    work: () => Promise<void>,
  ): Promise<void> {
    const { proxy, row, contender } = entry;
    if (entry.exited || row.skipped) return;
    if (proxy?.exited) {
      entry.exited = true;
      fail(
        row,
        contender,
        ctx,
        `${proxy.name} exited with code ${proxy.exited.code} during the ` +
          `run: "${proxy.stderr}"`,
      );
      return;
    }
    proxy?.signalTree("SIGCONT");
    try {
      await this.#ensureBackends();
      await work();
    } catch (error) {
      fail(row, contender, ctx, error);
    } finally {
      proxy?.signalTree("SIGSTOP");
    }
  }
}

/**
 * Measures memory once per row of `rows` on a fresh process of its proxy.
 * Runs after {@linkcode RunningRows.stop}: a second anyport in BPF mode
 * would take the steered ports over from the first.
 */
export async function measureMemoryRound(
  rows: readonly RoundRow[],
  ctx: MeasureContext,
  ensureBackends: () => Promise<void>,
): Promise<void> {
  for (const { contender, row } of rows) {
    if (row.skipped || !contender.start) continue;
    ctx.log(
      `memory round ${ctx.round}/${ctx.settings.rounds}: ${contender.label}`,
    );
    try {
      await ensureBackends();
      await measureMemory(contender, row, ctx);
    } catch (error) {
      fail(row, contender, ctx, error);
    }
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
