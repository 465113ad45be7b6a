# Photo PACS: chooses the root slot (A or B) and boots its kernel. U-Boot runs this from the
# boot partition (boot.scr, made by build.sh with mkimage); the same script serves the
# Raspberry Pi (Debian's rpi_arm64 U-Boot, started by the Pi firmware) and the qemu test
# (qemu_arm64 U-Boot as -bios).
#
# The boot state is RAUC's U-Boot convention: BOOT_ORDER ("A B", "B A", or one slot while
# RAUC writes the other) and
# BOOT_A_LEFT / BOOT_B_LEFT (attempts left, 0-3). It lives in a raw 512-byte U-Boot
# environment (CRC32 + variables) at byte 1 MiB of the card, in the gap before the first
# partition, not in a file: the FAT partition is never written at boot, and RAUC writes the
# same bytes from Linux with fw_setenv (/etc/fw_env.config). Each boot counts one attempt
# down before starting the kernel, unless the slot is PP_GOOD (the slot last marked good by
# photo-pacs-boot-check.service): a known-good slot keeps its attempts, so power cuts
# during its boot never push the box onto the other slot. A slot on trial (just installed)
# that fails three times in a row gives way to the other. Linux marks a slot good (attempts
# back to 3, PP_GOOD) once the gateway is ready.
#
# Only these four variables are imported: nothing on the card can change how U-Boot
# itself behaves. A state that fails its CRC, or holds values this script does not know,
# is replaced by the default (slot A first, 3 attempts each) and written back.

setenv pp_state_sector 0x800
setenv pp_state_count 0x1
# One sector: a power cut can tear a write of several sectors, not of one.
setenv pp_state_size 0x200
setenv pp_diskid 50504143

# Scratch memory relative to where the kernel goes (RAM starts at 0 on the Pi and at
# 1 GiB on qemu's virt machine); the Pi Zero 2 W has 512 MiB, so all of it stays low.
setexpr pp_ramdisk_addr ${kernel_addr_r} + 0x4000000
setexpr pp_state_addr ${kernel_addr_r} + 0xC000000

${devtype} dev ${devnum}
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv PP_GOOD
setenv pp_state_ok 0
if ${devtype} read ${pp_state_addr} ${pp_state_sector} ${pp_state_count}; then
    if env import -c ${pp_state_addr} ${pp_state_size} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT PP_GOOD; then
        setenv pp_state_ok 1
    fi
fi
# Anything but the values RAUC writes counts as corrupt. RAUC takes the slot it is about
# to write out of the order ("B" alone while it writes A): that is no corruption, and
# reading it as one would boot the half-written slot by default.
if test "${BOOT_ORDER}" != "A B" && test "${BOOT_ORDER}" != "B A" && test "${BOOT_ORDER}" != "A" && test "${BOOT_ORDER}" != "B"; then
    setenv pp_state_ok 0
fi
for pp_n in "${BOOT_A_LEFT}" "${BOOT_B_LEFT}"; do
    if test "${pp_n}" != "0" && test "${pp_n}" != "1" && test "${pp_n}" != "2" && test "${pp_n}" != "3"; then
        setenv pp_state_ok 0
    fi
done
if test -n "${PP_GOOD}" && test "${PP_GOOD}" != "A" && test "${PP_GOOD}" != "B"; then
    setenv pp_state_ok 0
fi
setenv pp_write 0
if test "${pp_state_ok}" != "1"; then
    echo "Photo PACS: boot state missing or corrupt; using the default (A first, 3 attempts each)"
    setenv BOOT_ORDER "A B"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
    setenv PP_GOOD
    setenv pp_write 1
fi

setenv pp_slot
for pp_try in ${BOOT_ORDER}; do
    if test -z "${pp_slot}"; then
        if test "${pp_try}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
            setenv pp_slot A
            setenv pp_part 2
            if test "${PP_GOOD}" != "A"; then
                setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
                setenv pp_write 1
            fi
        elif test "${pp_try}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
            setenv pp_slot B
            setenv pp_part 3
            if test "${PP_GOOD}" != "B"; then
                setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
                setenv pp_write 1
            fi
        fi
    fi
done
# Neither slot has attempts left: boot the slot last known good, else the first in order,
# without counting, rather than cycle through reboots forever (Linux does not reboot
# while the other slot has no attempts left; marking the slot good gives it its attempts
# back).
if test -z "${pp_slot}"; then
    echo "Photo PACS: no slot has attempts left; booting the last good one (or the first in order)"
    setenv pp_slot ${PP_GOOD}
    for pp_try in ${BOOT_ORDER}; do
        if test -z "${pp_slot}"; then
            setenv pp_slot ${pp_try}
        fi
    done
    if test "${pp_slot}" = "A"; then setenv pp_part 2; else setenv pp_part 3; fi
fi

# Written only when it changed: a known-good slot's boot writes nothing to the card.
if test "${pp_write}" = "1"; then
    env export -c -s ${pp_state_size} ${pp_state_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT PP_GOOD
    if ${devtype} write ${pp_state_addr} ${pp_state_sector} ${pp_state_count}; then
        echo "Photo PACS: boot state written"
    else
        echo "Photo PACS: could not write the boot state"
    fi
fi
echo "Photo PACS: slot ${pp_slot}; attempts left A=${BOOT_A_LEFT} B=${BOOT_B_LEFT}; order ${BOOT_ORDER}; last good ${PP_GOOD}"

# The console: the Pi's mini UART (and its screen), or the virt machine's PL011.
if test "${board}" = "rpi"; then
    setenv pp_console "console=tty0 console=ttyS1,115200"
else
    setenv pp_console "console=ttyAMA0"
fi
setenv bootargs "${pp_console} root=PARTUUID=${pp_diskid}-0${pp_part} rauc.slot=${pp_slot} ro rootwait fsck.repair=yes net.ifnames=0 panic=10"
echo "Photo PACS: bootargs ${bootargs}"

# The slot's own kernel and initrd (links made by build.sh), with the device tree the
# firmware (Pi) or qemu handed to U-Boot.
if test -n "${fdt_addr}"; then setenv pp_fdt ${fdt_addr}; else setenv pp_fdt ${fdtcontroladdr}; fi
if load ${devtype} ${devnum}:${pp_part} ${kernel_addr_r} /boot/vmlinuz; then
    if load ${devtype} ${devnum}:${pp_part} ${pp_ramdisk_addr} /boot/initrd.img; then
        booti ${kernel_addr_r} ${pp_ramdisk_addr}:${filesize} ${pp_fdt}
    fi
fi
# The slot could not be read or booted: this attempt is already counted, so a reset tries
# again and, after three, the other slot.
echo "Photo PACS: slot ${pp_slot} did not boot; resetting in 5 s"
sleep 5
reset
