//! The SD card's slot chooser (image-build/boot/boot.cmd) run by Debian's own qemu_arm64
//! U-Boot under qemu-system-aarch64, on a small disk laid out like the card: the boot state
//! at byte 1 MiB, the FAT partition with boot.scr, root slots A and B by PARTUUID
//! 50504143-02/03. The slots hold files that are not kernels, so each boot ends where
//! boot.scr hands over to the kernel: booti refuses, the script resets, and qemu
//! (-no-reboot) exits. The state is written with U-Boot's mkenvimage and fw_setenv and read
//! back with fw_printenv, the libubootenv tools RAUC uses on the box.
//!
//! image-build/test-update.sh runs the whole image the same way (by hand, about an hour).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
const STATE_OFFSET: u64 = 0x10_0000;
const STATE_SIZE: usize = 0x200;
const SECTOR: u64 = 512;
/// The state once an update into B was marked good: B first, A kept as the fallback.
const RUNNING_B_AFTER_AN_UPDATE: [(&str, &str); 4] = [
    ("BOOT_ORDER", "B A"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "3"),
    ("PP_GOOD", "B"),
];
/// Partition starts in sectors: the 4 MiB gap, FAT 8 MiB, slots of 4 MiB.
const FAT_START: u64 = 8192;
const A_START: u64 = FAT_START + 16384;
const B_START: u64 = A_START + 8192;
const END: u64 = B_START + 8192 + 2048;

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A card image in a temporary folder.
struct Card {
    dir: tempfile::TempDir,
    disk: PathBuf,
}

impl Card {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image-build/boot/boot.cmd");
        run(Command::new("mkimage")
            .args([
                "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "test",
            ])
            .arg("-d")
            .arg(&script)
            .arg(d.join("boot.scr")))?;
        run(Command::new("mkfs.vfat")
            .args(["-n", "PPBOOT", "-C"])
            .arg(d.join("fat.img"))
            .arg("8192"))?;
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(d.join("fat.img"))
            .arg(d.join("boot.scr"))
            .arg("::/"))?;
        for slot in ["A", "B"] {
            let tree = d.join(format!("slot{slot}"));
            fs::create_dir_all(tree.join("boot"))?;
            fs::write(
                tree.join("boot/vmlinuz"),
                format!("not a kernel: slot {slot}\n"),
            )?;
            fs::write(
                tree.join("boot/initrd.img"),
                format!("not an initrd: slot {slot}\n"),
            )?;
            run(Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", "PPROOT", "-d"])
                .arg(&tree)
                .arg(d.join(format!("slot{slot}.img")))
                .arg("4M"))?;
        }
        let disk = d.join("card.img");
        fs::File::create(&disk)?.set_len(END * SECTOR)?;
        let table = format!(
            "label: dos\nlabel-id: 0x50504143\nunit: sectors\n\
             start={FAT_START}, size=16384, type=c, bootable\n\
             start={A_START}, size=8192, type=83\n\
             start={B_START}, size=8192, type=83\n"
        );
        let mut sfdisk = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&disk)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        sfdisk
            .stdin
            .take()
            .context("sfdisk stdin")?
            .write_all(table.as_bytes())?;
        let out = sfdisk.wait_with_output()?;
        ensure!(
            out.status.success(),
            "sfdisk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let card = Card { dir, disk };
        card.put(FAT_START * SECTOR, &fs::read(d.join("fat.img"))?)?;
        card.put(A_START * SECTOR, &fs::read(d.join("slotA.img"))?)?;
        card.put(B_START * SECTOR, &fs::read(d.join("slotB.img"))?)?;
        fs::write(
            d.join("fw_env.config"),
            format!("{} 0x100000 0x200\n", card.disk.display()),
        )?;
        Ok(card)
    }

    fn put(&self, at: u64, bytes: &[u8]) -> Result<()> {
        let mut f = OpenOptions::new().write(true).open(&self.disk)?;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(bytes)?;
        Ok(())
    }

    fn state_bytes(&self) -> Result<Vec<u8>> {
        let mut f = fs::File::open(&self.disk)?;
        f.seek(SeekFrom::Start(STATE_OFFSET))?;
        let mut b = vec![0; STATE_SIZE];
        f.read_exact(&mut b)?;
        Ok(b)
    }

    /// A state as build.sh writes it (mkenvimage: CRC32 + variables).
    fn set_state(&self, vars: &[(&str, &str)]) -> Result<()> {
        let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let txt = self.dir.path().join("state.txt");
        let bin = self.dir.path().join("state.bin");
        fs::write(&txt, text)?;
        run(Command::new("mkenvimage")
            .args(["-s", "0x200", "-o"])
            .arg(&bin)
            .arg(&txt))?;
        self.put(STATE_OFFSET, &fs::read(&bin)?)
    }

    /// One variable changed as RAUC changes it on the box (fw_setenv).
    fn fw_setenv(&self, name: &str, value: &str) -> Result<()> {
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(self.dir.path().join("fw_env.config"))
            .args([name, value]))
        .map(|_| ())
    }

    /// The state as RAUC reads it (fw_printenv); fails on a bad CRC.
    fn state(&self) -> Result<BTreeMap<String, String>> {
        let out = run(Command::new("fw_printenv")
            .arg("-c")
            .arg(self.dir.path().join("fw_env.config")))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Powers the "board" on: U-Boot runs boot.scr, which picks a slot and hands over; the
    /// console up to there.
    fn boot(&self) -> Result<Boot> {
        let log = self.dir.path().join("console.log");
        let _ = fs::remove_file(&log);
        let mut qemu = Command::new("qemu-system-aarch64")
            .args([
                "-M",
                "virt",
                "-cpu",
                "cortex-a53",
                "-m",
                "512",
                "-nographic",
                "-no-reboot",
            ])
            .args([
                "-bios", UBOOT, "-net", "none", "-monitor", "none", "-display", "none",
            ])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", self.disk.display()))
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting qemu-system-aarch64")?;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if qemu.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = qemu.kill();
                let _ = qemu.wait();
                bail!(
                    "U-Boot did not hand over within 180 s; console:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let console = String::from_utf8_lossy(&fs::read(&log)?).into_owned();
        let line = |prefix: &str| {
            console
                .lines()
                .find_map(|l| l.trim_end().strip_prefix(prefix).map(str::to_string))
        };
        let chosen = line("Photo PACS: slot ")
            .with_context(|| format!("boot.scr chose no slot; console:\n{console}"))?;
        let bootargs = line("Photo PACS: bootargs ")
            .with_context(|| format!("boot.scr set no bootargs; console:\n{console}"))?;
        ensure!(
            console.contains("did not boot; resetting"),
            "boot.scr did not reach the hand-over; console:\n{console}"
        );
        Ok(Boot {
            slot: chosen.chars().next().map(String::from).unwrap_or_default(),
            bootargs,
            console,
        })
    }
}

struct Boot {
    slot: String,
    bootargs: String,
    console: String,
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn a_new_card_boots_slot_a_by_partuuid_and_counts_the_attempt() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ])?;
    let boot = card.boot()?;
    assert_eq!(boot.slot, "A", "{}", boot.console);
    assert!(
        boot.bootargs
            .contains("root=PARTUUID=50504143-02 rauc.slot=A ro")
            && boot.bootargs.contains("console=ttyAMA0")
            && boot.bootargs.contains("panic=10"),
        "{}",
        boot.bootargs
    );
    assert_eq!(
        card.state()?,
        vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "0")
        ])
    );
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn a_new_slot_on_trial_gets_three_attempts_then_the_last_good_slot_boots() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        ("PP_GOOD", "A"),
    ])?;
    // What RAUC does after it wrote slot B (through fw_setenv, as on the box).
    card.fw_setenv("BOOT_ORDER", "B A")?;
    card.fw_setenv("BOOT_B_LEFT", "3")?;
    for left in ["2", "1", "0"] {
        let boot = card.boot()?;
        assert_eq!(boot.slot, "B", "{}", boot.console);
        assert!(
            boot.bootargs
                .contains("root=PARTUUID=50504143-03 rauc.slot=B")
        );
        assert_eq!(
            card.state()?.get("BOOT_B_LEFT").map(String::as_str),
            Some(left)
        );
    }
    let boot = card.boot()?;
    assert_eq!(boot.slot, "A", "the fourth boot: {}", boot.console);
    assert_eq!(
        card.state()?,
        vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "0"),
            ("PP_GOOD", "A"),
        ]),
        "the good slot's attempts are not counted"
    );
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn a_power_cut_while_rauc_writes_a_slot_boots_the_running_one() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&RUNNING_B_AFTER_AN_UPDATE)?;
    // RAUC marks the slot it is about to write bad: out of the order, no attempts left.
    card.fw_setenv("BOOT_ORDER", "B")?;
    card.fw_setenv("BOOT_A_LEFT", "0")?;
    let boot = card.boot()?;
    assert!(!boot.console.contains("corrupt"), "{}", boot.console);
    assert_eq!(boot.slot, "B", "not the half-written A: {}", boot.console);
    assert_eq!(
        card.state()?,
        vars(&[
            ("BOOT_ORDER", "B"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "3"),
            ("PP_GOOD", "B")
        ])
    );
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn a_known_good_slot_boots_without_a_write_to_the_card() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&RUNNING_B_AFTER_AN_UPDATE)?;
    let before = card.state_bytes()?;
    for _ in 0..2 {
        let boot = card.boot()?;
        assert_eq!(boot.slot, "B", "{}", boot.console);
        assert!(!boot.console.contains("boot state written"));
    }
    assert!(card.state_bytes()? == before, "the state's bytes changed");
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn a_corrupt_state_is_replaced_by_the_default_and_written_back() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ])?;
    // One flipped byte inside the variables: the CRC no longer matches.
    let mut bytes = card.state_bytes()?;
    bytes[10] ^= 0xFF;
    card.put(STATE_OFFSET, &bytes)?;
    assert!(
        card.state().is_err(),
        "control: fw_printenv refuses the corrupt state"
    );
    let boot = card.boot()?;
    assert!(
        boot.console.contains("boot state missing or corrupt"),
        "{}",
        boot.console
    );
    assert_eq!(boot.slot, "A");
    assert_eq!(
        card.state()?,
        vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "3")
        ]),
        "the default, one attempt of A counted, readable by fw_printenv again"
    );
    // A card whose gap was never written (all zeros) is the same case.
    card.put(STATE_OFFSET, &vec![0; STATE_SIZE])?;
    let boot = card.boot()?;
    assert_eq!(boot.slot, "A", "{}", boot.console);
    assert_eq!(
        card.state()?.get("BOOT_A_LEFT").map(String::as_str),
        Some("2")
    );
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn values_it_does_not_know_count_as_corrupt_and_other_variables_are_not_imported() -> Result<()> {
    let card = Card::new()?;
    // A valid CRC, but attempts RAUC never writes, and a variable that would change how
    // U-Boot itself boots were it imported.
    card.set_state(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "7"),
        ("bootargs", "init=/bin/sh"),
    ])?;
    let boot = card.boot()?;
    assert!(
        boot.console.contains("boot state missing or corrupt"),
        "{}",
        boot.console
    );
    assert_eq!(boot.slot, "A");
    assert!(!boot.bootargs.contains("init=/bin/sh"), "{}", boot.bootargs);
    let state = card.state()?;
    assert_eq!(state.get("BOOT_B_LEFT").map(String::as_str), Some("3"));
    assert!(!state.contains_key("bootargs"), "{state:?}");
    Ok(())
}

#[test]
#[cfg_attr(
    missing_peer = "uboot",
    ignore = "needs apt-get install qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool dosfstools mtools"
)]
fn with_no_attempts_left_the_last_good_slot_boots_uncounted() -> Result<()> {
    let card = Card::new()?;
    card.set_state(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
        ("PP_GOOD", "B"),
    ])?;
    let boot = card.boot()?;
    assert!(
        boot.console.contains("no slot has attempts left"),
        "{}",
        boot.console
    );
    assert_eq!(boot.slot, "B");
    // No good slot known: the first in order.
    card.set_state(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
    ])?;
    let boot = card.boot()?;
    assert_eq!(boot.slot, "B", "{}", boot.console);
    assert_eq!(
        card.state()?,
        vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "0")
        ])
    );
    Ok(())
}
