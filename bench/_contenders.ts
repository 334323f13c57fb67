/**
 * The proxies under test, their configs and how each one is started.
 *
 * Every proxy gets two listeners on 127.0.0.1 of its own, so that all of
 * them can run at once: one forwards to the echo backend and one to the
 * iperf3 server. Timeouts match:
 * 5 s to connect to a target and 10 min without traffic before a connection
 * is closed. No proxy writes access logs.
 */
import { Service } from "./_process.ts";

/** Port of the C echo backend. */
export const ECHO_BACKEND_PORT = 9000;
/** Port of the iperf3 server. */
export const BULK_BACKEND_PORT = 5201;
/** anyport's listener that forwards to the echo backend. */
export const ECHO_PORT = 15001;
/** anyport's listener that forwards to the iperf3 server. */
export const BULK_PORT = 15002;

/** Path of the anyport entry point. */
export const ANYPORT_MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Max connections per proxy; each needs two file descriptors. */
const MAX_CONNS = 9000;

/** One row of the benchmark. */
export interface Contender {
  /** Short id used in the results file. */
  id: string;
  /** Row title in the report. */
  label: string;
  /** Port that reaches the echo backend, through the proxy if there is one. */
  echoPort: number;
  /** Port that reaches the iperf3 server, through the proxy if there is one. */
  bulkPort: number;
  /** Starts the proxy with its config in `dir`. The direct row has none. */
  start?: (dir: string) => Service;
}

/** Options of an anyport config written by {@linkcode anyportConfig}. */
export interface AnyportConfigOptions {
  /** Port list per app: numbers or range strings such as "20000-29999". */
  apps: { name: string; ports: (number | string)[]; target: number }[];
  /** Use the BPF frontend instead of per-port listeners. */
  bpf: boolean;
}

/** Builds an anyport config with the benchmark's timeouts. */
export function anyportConfig(options: AnyportConfigOptions): string {
  const config: Record<string, unknown> = {
    Apps: options.apps.map((app) => ({
      Name: app.name,
      Ports: app.ports,
      Targets: [`127.0.0.1:${app.target}`],
    })),
    ListenAddress: "127.0.0.1",
    ConnectTimeoutMs: 5_000,
    IdleTimeoutMs: 600_000,
    // The benchmark closes its connections before stopping the proxy.
    DrainTimeoutMs: 1_000,
  };
  if (options.bpf) {
    config.Mode = "bpf";
    config.SteerPrefixes = ["127.0.0.1/32"];
  }
  return JSON.stringify(config, null, 2);
}

/**
 * Removes anyport's BPF program and pins from the network namespace. They
 * outlive the process on purpose, so that a restart can take over. Until
 * they are removed, the steered ports refuse connections, which would also
 * break the next proxy under test.
 */
export async function detachBpf(): Promise<void> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ANYPORT_MAIN, "bpf", "detach"],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `Cannot detach anyport's BPF program: ` +
        new TextDecoder().decode(output.stderr).trim(),
    );
  }
}

/** Starts anyport on the config file `path`. */
export function startAnyport(path: string, bpf: boolean): Service {
  // BPF mode loads a program and reads /proc/self, which needs -A.
  const permissions = bpf
    ? ["-A"]
    : ["--allow-net", "--allow-read", "--allow-ffi"];
  return new Service(
    "anyport",
    Deno.execPath(),
    [
      "run",
      ...permissions,
      ANYPORT_MAIN,
      "--config",
      path,
      "--log-level",
      "warning",
    ],
    bpf ? detachBpf : undefined,
  );
}

function anyport(
  bpf: boolean,
  echoPort: number,
  bulkPort: number,
): (dir: string) => Service {
  return (dir) => {
    const path = `${dir}/anyport${bpf ? "-bpf" : ""}.json`;
    Deno.writeTextFileSync(
      path,
      anyportConfig({
        apps: [
          { name: "echo", ports: [echoPort], target: ECHO_BACKEND_PORT },
          { name: "bulk", ports: [bulkPort], target: BULK_BACKEND_PORT },
        ],
        bpf,
      }),
    );
    return startAnyport(path, bpf);
  };
}

/** Builds a HAProxy config; `threads` undefined keeps HAProxy's default. */
export function haproxyConfig(
  threads: number | undefined,
  echoPort: number,
  bulkPort: number,
): string {
  return [
    "global",
    threads === undefined ? "" : `  nbthread ${threads}`,
    `  maxconn ${MAX_CONNS}`,
    "",
    "defaults",
    "  mode tcp",
    `  maxconn ${MAX_CONNS}`,
    "  timeout connect 5s",
    "  timeout client 10m",
    "  timeout server 10m",
    "",
    "listen echo",
    `  bind 127.0.0.1:${echoPort}`,
    `  server echo 127.0.0.1:${ECHO_BACKEND_PORT}`,
    "",
    "listen bulk",
    `  bind 127.0.0.1:${bulkPort}`,
    `  server bulk 127.0.0.1:${BULK_BACKEND_PORT}`,
    "",
  ].join("\n");
}

function haproxy(
  threads: number | undefined,
  echoPort: number,
  bulkPort: number,
): (dir: string) => Service {
  return (dir) => {
    const path = `${dir}/haproxy-${threads ?? "default"}.cfg`;
    Deno.writeTextFileSync(path, haproxyConfig(threads, echoPort, bulkPort));
    // -db stays in the foreground without the master process.
    return new Service("haproxy", "haproxy", ["-db", "-f", path]);
  };
}

/** Builds an nginx config with one worker and the stream module. */
export function nginxConfig(
  dir: string,
  echoPort: number,
  bulkPort: number,
): string {
  return [
    "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
    "daemon off;",
    "worker_processes 1;",
    `worker_rlimit_nofile ${2 * MAX_CONNS + 100};`,
    `pid ${dir}/nginx.pid;`,
    "error_log stderr warn;",
    "",
    "events {",
    `  worker_connections ${2 * MAX_CONNS};`,
    "}",
    "",
    "stream {",
    "  proxy_connect_timeout 5s;",
    "  proxy_timeout 10m;",
    "  server {",
    `    listen 127.0.0.1:${echoPort};`,
    `    proxy_pass 127.0.0.1:${ECHO_BACKEND_PORT};`,
    "  }",
    "  server {",
    `    listen 127.0.0.1:${bulkPort};`,
    `    proxy_pass 127.0.0.1:${BULK_BACKEND_PORT};`,
    "  }",
    "}",
    "",
  ].join("\n");
}

function nginx(echoPort: number, bulkPort: number): (dir: string) => Service {
  return (dir) => {
    const path = `${dir}/nginx.conf`;
    Deno.writeTextFileSync(path, nginxConfig(dir, echoPort, bulkPort));
    // -e keeps nginx from opening its default error log before reading path.
    return new Service("nginx", "nginx", [
      "-e",
      "stderr",
      "-p",
      dir,
      "-c",
      path,
    ]);
  };
}

/** All rows in report order. The direct row is the limit of the setup. */
export const CONTENDERS: readonly Contender[] = [
  {
    id: "direct",
    label: "no proxy (limit)",
    echoPort: ECHO_BACKEND_PORT,
    bulkPort: BULK_BACKEND_PORT,
  },
  {
    id: "anyport",
    label: "anyport, per-port listeners",
    echoPort: ECHO_PORT,
    bulkPort: BULK_PORT,
    start: anyport(false, ECHO_PORT, BULK_PORT),
  },
  {
    id: "anyport-bpf",
    label: "anyport, BPF mode",
    echoPort: 15011,
    bulkPort: 15012,
    start: anyport(true, 15011, 15012),
  },
  {
    id: "haproxy-1",
    label: "HAProxy, nbthread 1",
    echoPort: 15021,
    bulkPort: 15022,
    start: haproxy(1, 15021, 15022),
  },
  {
    id: "haproxy",
    label: "HAProxy, default threads",
    echoPort: 15031,
    bulkPort: 15032,
    start: haproxy(undefined, 15031, 15032),
  },
  {
    id: "nginx-1",
    label: "nginx stream, 1 worker",
    echoPort: 15041,
    bulkPort: 15042,
    start: nginx(15041, 15042),
  },
];

/** Id of the row that every ratio in the report divides by. */
export const BASELINE_ID = "haproxy-1";

/**
 * Row ids in the order that a slice measures them (every other slice runs
 * it backwards). The baseline sits between the two anyport rows, so each of
 * them runs right before or after it.
 */
export const MEASURE_ORDER: readonly string[] = [
  "direct",
  "anyport",
  BASELINE_ID,
  "anyport-bpf",
  "haproxy",
  "nginx-1",
];
