import assert from "node:assert/strict";
import { checkBpfFs, checkCapabilities } from "./requirements.ts";

const CAP_NET_ADMIN = 1n << 12n;
const CAP_SYS_ADMIN = 1n << 21n;
const CAP_BPF = 1n << 39n;

Deno.test("checkCapabilities() accepts CAP_BPF with CAP_NET_ADMIN", () => {
  checkCapabilities(CAP_BPF | CAP_NET_ADMIN);
  checkCapabilities(CAP_SYS_ADMIN);
});

Deno.test("checkCapabilities() names each missing capability", () => {
  for (
    const [capabilities, missing] of [
      [0n, "CAP_BPF and CAP_NET_ADMIN"],
      [CAP_BPF, "CAP_NET_ADMIN"],
      [CAP_NET_ADMIN, "CAP_BPF"],
    ] as const
  ) {
    assert.throws(() => checkCapabilities(capabilities), {
      message: `Cannot use BPF steering: the process lacks ` +
        `${missing}; run as root or grant CAP_BPF and CAP_NET_ADMIN`,
    });
  }
});

const MOUNTINFO = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "25 22 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw",
  "31 25 0:26 / /sys/fs/bpf rw,nosuid shared:12 - bpf bpf rw,mode=700",
  "40 22 0:30 / /mnt/my\\040bpf rw - bpf none rw",
].join("\n");

Deno.test("checkBpfFs() accepts paths on a bpffs", () => {
  checkBpfFs("/sys/fs/bpf", MOUNTINFO);
  checkBpfFs("/sys/fs/bpf/anyport", MOUNTINFO);
  checkBpfFs("/mnt/my bpf/anyport", MOUNTINFO);
});

Deno.test("checkBpfFs() rejects paths on other file systems", () => {
  assert.throws(() => checkBpfFs("/sys/fs/bpfx/anyport", MOUNTINFO), {
    message: 'Cannot pin BPF state under "/sys/fs/bpfx/anyport": no bpffs ' +
      'is mounted there (found sysfs at "/sys"); mount one with ' +
      '"mount -t bpf bpf /sys/fs/bpf"',
  });
  // A later mount on the same point hides the bpffs.
  const covered = `${MOUNTINFO}\n50 31 0:40 / /sys/fs/bpf rw - tmpfs tmpfs rw`;
  assert.throws(
    () => checkBpfFs("/sys/fs/bpf/anyport", covered),
    /found tmpfs at "\/sys\/fs\/bpf"/,
  );
});
