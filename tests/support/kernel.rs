//! A stand-in for the running kernel's modules, for a private mount namespace: its
//! /proc/modules, its release's modules.builtin and modules.alias, the devices under
//! /sys/devices with their modaliases, and a `modprobe` that records its calls and loads or
//! unloads in the stand-in /proc/modules. Nothing reaches the machine's kernel or its /lib.
//!
//! The files live in a directory `$W`; shell snippets mount them where converge looks, in
//! the namespace that runs them. `$R` is the root they are mounted under (empty for the
//! namespace's own, a tree's path for a chroot), `$V` where `$W` is seen from inside `$R`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What the stand-in kernel has loaded, built in, can load, and which devices it sees.
#[derive(Clone, Copy)]
pub struct Kernel<'a> {
    /// /proc/modules.
    pub loaded: &'a str,
    /// modules.builtin.
    pub builtin: &'a str,
    /// The modules `modprobe` finds, one a line.
    pub available: &'a str,
    /// modules.alias.
    pub aliases: &'a str,
    /// Devices under /sys/devices: (path below it, modalias). None: the machine's own.
    pub devices: &'a [(&'a str, &'a str)],
}

/// Stands in for modprobe: records each call (with the options modprobe.d gives the module,
/// which shows the options file was there first), refuses what modprobe.d's `install NAME
/// /bin/false` refuses and what `$W/available` does not list, as modprobe does, and loads or
/// unloads in the stand-in /proc/modules.
const SHIM: &str = r#"#!/bin/sh
W=@W@
if [ "$1" = -r ]; then
  echo "modprobe -r $2" >> $W/calls
  grep -v "^$2 " /proc/modules > $W/modules.new
  cat $W/modules.new > /proc/modules
  exit 0
fi
name=$1
opts=$(sed -n "s/^options $name //p" /etc/modprobe.d/*.conf 2>/dev/null)
echo "modprobe $name (options: $opts)" >> $W/calls
if grep -q "^install $name /bin/false" /etc/modprobe.d/*.conf 2>/dev/null; then
  echo "modprobe: ERROR: ../libkmod/libkmod-module.c:1054 command_do() Error running install command '/bin/false' for module $name: retcode 1" >&2
  echo "modprobe: ERROR: could not insert '$name': Invalid argument" >&2
  exit 1
fi
if ! grep -qx "$name" $W/available; then
  echo "modprobe: FATAL: Module $name not found in directory /lib/modules/$(uname -r)" >&2
  exit 1
fi
echo "$name 16384 0 - Live 0x0000000000000000" >> /proc/modules
"#;

/// Writes `kernel`'s files into `dir` (the `$W` of the snippets), with `modprobe` in
/// `dir/sbin` calling back into `inside`, where `dir` is seen from where it runs.
pub fn write(dir: &Path, kernel: &Kernel, inside: &str) {
    std::fs::write(dir.join("modules"), kernel.loaded).unwrap();
    std::fs::write(dir.join("builtin"), kernel.builtin).unwrap();
    std::fs::write(dir.join("available"), kernel.available).unwrap();
    std::fs::write(dir.join("alias"), kernel.aliases).unwrap();
    std::fs::write(dir.join("calls"), "").unwrap();
    if !kernel.devices.is_empty() {
        for (path, modalias) in kernel.devices {
            let device = dir.join("devices").join(path);
            std::fs::create_dir_all(&device).unwrap();
            std::fs::write(device.join("modalias"), format!("{modalias}\n")).unwrap();
        }
        // The machine's CPUs stay in sight: a snapshot records them for the sysctls the
        // kernel sizes from them.
        let cpus = Path::new("/sys/devices/system/cpu/possible");
        if let Ok(text) = std::fs::read(cpus) {
            let copy = dir.join("devices/system/cpu");
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::write(copy.join("possible"), text).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("sbin")).unwrap();
    let shim = dir.join("sbin/modprobe");
    std::fs::write(&shim, SHIM.replace("@W@", inside)).unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Mounts the stand-in /proc/modules under `$R`. It is bound over when the kernel has one;
/// a kernel built without modules has none to bind over, so proc becomes a tmpfs of links
/// into the real proc (mounted aside in `$W`), with the stand-in as its `modules`, and the
/// real `sys` bound in (sysctl(8) refuses a path that resolves outside /proc/sys). Then `$W`
/// is bound at `$R$V` when `$R` is a tree, so the links and the shim reach it from inside.
pub const PROC_MODULES: &str = r#"set -u
fail() { echo "setup: $*"; exit 99; }
bound=
if [ -e $R/proc/modules ]; then
  mount --bind $W/modules $R/proc/modules || fail bind
  bound=1
else
  mkdir -p $W/realproc && mount --rbind $R/proc $W/realproc || fail rbind
fi
if [ -n "$R" ]; then mkdir -p $R$V && mount --rbind $W $R$V || fail standins; fi
if [ -z "$bound" ]; then
  mount -t tmpfs tmpfs $R/proc || fail tmpfs
  for e in $W/realproc/*; do
    [ "${e##*/}" = sys ] || ln -s "$V/realproc/${e##*/}" $R/proc/
  done
  mkdir $R/proc/sys && mount --rbind $W/realproc/sys $R/proc/sys || fail sys
  ln -sf $V/modules $R/proc/modules
fi
"#;

/// Puts the stand-in modules.builtin and modules.alias where the running release's are
/// (in an overlay of /usr/lib, over `$W/lib.up`), and the stand-in devices, if any, over
/// /sys/devices.
pub const MODULE_FILES: &str = r#"mkdir -p $W/lib.up $W/lib.work
mount -t overlay overlay -o lowerdir=/usr/lib,upperdir=$W/lib.up,workdir=$W/lib.work /usr/lib || fail lib
mkdir -p /lib/modules/$(uname -r)
cp $W/builtin /lib/modules/$(uname -r)/modules.builtin
cp $W/alias /lib/modules/$(uname -r)/modules.alias
if [ -d $W/devices ]; then mount --bind $W/devices /sys/devices || fail devices; fi
"#;
