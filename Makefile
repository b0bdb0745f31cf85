# Swift VM kernel: freestanding images for x86_64 (QEMU q35), aarch64 (QEMU virt) and the Raspberry Pi 3B.
#   make run [ARCH=aarch64]    build, boot in QEMU, run the self-tests live; exit status = verdict
#   make test                  host unit tests, then both arches under QEMU via scripts/ktap_run.py
#   make run ARCH=aarch64 BOARD=raspi3b   the Raspberry Pi 3B build (build/raspi3b/kernel8.img)
#   make image                 SD-card image for a real Pi 3B (build/rpi3-sd.img)
#   make bench [ARCH=...]      benchmark build, BENCH lines -> scripts/bench_report.py
#   make debug [ARCH=...]      QEMU halted with a gdb stub; prints the gdb command
# Everything lands in build/ (ignored by git).

ARCH ?= x86_64
SWIFT_BIN ?= $(firstword $(wildcard /opt/swift/usr/bin) $(dir $(shell command -v swiftc 2>/dev/null)))
SWIFTC := $(SWIFT_BIN)/swiftc
SWIFT := $(SWIFT_BIN)/swift
CLANG := $(SWIFT_BIN)/clang
LLD := $(SWIFT_BIN)/ld.lld
OBJCOPY := $(SWIFT_BIN)/llvm-objcopy
PYTHON ?= python3
TIMEOUT ?= 900
QEMU_MEMORY ?= 256M

ifeq ($(ARCH),x86_64)
  TRIPLE := x86_64-unknown-none-elf
  ARCH_SWIFTFLAGS := -Xcc -mno-red-zone
  ARCH_CFLAGS := -mno-red-zone
  QEMU := qemu-system-x86_64
  QEMU_MACHINE := -machine q35 -cpu max -device isa-debug-exit,iobase=0xf4,iosize=0x04
  QEMU_KERNEL = -kernel $(ELF)
  QEMU_DISK_DEVICE := -device virtio-blk-pci,drive=swap,disable-legacy=on
  SUCCESS_EXIT := 33
else ifeq ($(ARCH),aarch64)
  TRIPLE := aarch64-none-none-elf
  ARCH_SWIFTFLAGS :=
  ARCH_CFLAGS :=
  QEMU := qemu-system-aarch64
  # virtualization=on makes QEMU enter at EL2, exercising the EL2 -> EL1 drop; make test
  # also boots with ENTRY_EL2=off (entered at EL1).
  ENTRY_EL2 ?= on
  QEMU_MACHINE := -machine virt,gic-version=2,virtualization=$(ENTRY_EL2) -cpu cortex-a72 -semihosting
  QEMU_KERNEL = -kernel $(IMAGE)
  QEMU_DISK_DEVICE := -device virtio-blk-device,drive=swap -global virtio-mmio.force-legacy=false
  SUCCESS_EXIT := 0
  # BOARD=raspi3b: the Raspberry Pi 3B (QEMU raspi3b, or a real board from build/rpi3-sd.img).
  # Board code is chosen at build time (-D BOARD_RASPI3B; Arch/aarch64/Board.swift).
  BOARD ?= virt
  ifeq ($(BOARD),raspi3b)
    ARCH_SWIFTFLAGS := -D BOARD_RASPI3B
    ARCH_CFLAGS := -DBOARD_RASPI3B
    QEMU_MACHINE := -machine raspi3b -semihosting
    QEMU_MEMORY := 1G
    QEMU_DRIVES = -drive if=sd,format=raw,file=$(SD_IMAGE)
    # RASPI_DTB=1: pass Boot/aarch64/raspi3b.dts as the DTB (x0); otherwise none, and the
    # kernel asks the VideoCore mailbox for RAM. test-kernel checks which path the boot took.
    ifeq ($(RASPI_DTB),1)
      QEMU_MACHINE += -dtb build/raspi3b/raspi3b.dtb
      BOOT_LOADER := DTB
    else
      BOOT_LOADER := firmware mailbox
    endif
  else ifneq ($(BOARD),virt)
    $(error BOARD must be virt or raspi3b, not '$(BOARD)')
  endif
else
  $(error ARCH must be x86_64 or aarch64, not '$(ARCH)')
endif

VARIANT ?= test
TARGET_NAME := $(if $(filter raspi3b,$(BOARD)),raspi3b,$(ARCH))
BUILD := build/$(TARGET_NAME)$(if $(filter bench,$(VARIANT)),-bench,)
ELF := $(BUILD)/kernel.elf
IMAGE := $(BUILD)/$(if $(filter raspi3b,$(BOARD)),kernel8.img,kernel.bin)
SD_IMAGE := build/rpi3-sd.img
SWIFT_SOURCES := $(shell find Kernel -name '*.swift' | sort) $(sort $(wildcard Arch/$(ARCH)/*.swift))
ASM_SOURCES := $(sort $(wildcard Boot/$(ARCH)/*.S))
ASM_OBJECTS := $(patsubst Boot/$(ARCH)/%.S,$(BUILD)/boot/%.o,$(ASM_SOURCES))
UNICODE_TABLES := $(SWIFT_BIN)/../lib/swift/embedded/$(TRIPLE)/libswiftUnicodeDataTables.a

SWIFTFLAGS := -target $(TRIPLE) -enable-experimental-feature Embedded \
  -enable-experimental-feature Extern -wmo -parse-as-library -Osize -gline-tables-only \
  -Xfrontend -disable-stack-protector -Xfrontend -function-sections -module-name Kernel \
  $(ARCH_SWIFTFLAGS) $(if $(filter bench,$(VARIANT)),-D BENCH,)
LDFLAGS := -T linker/$(ARCH).ld --orphan-handling=error -nostdlib -static --gc-sections \
  -z max-page-size=4096 -z norelro --no-dynamic-linker --build-id=none

# The swap disk (virtio-blk): rewritten with the host pattern before every boot by the
# disk-image target (scripts/disk_image.py has the layout); test-kernel checks it afterwards.
DISK_IMAGE = build/disk/$(LOG_NAME)-swap.img
QEMU_DRIVES ?= -drive if=none,id=swap,file=$(DISK_IMAGE),format=raw $(QEMU_DISK_DEVICE)
QEMU_COMMON = -m $(QEMU_MEMORY) -nic none -display none -serial stdio -monitor none -no-reboot $(QEMU_MACHINE) $(QEMU_KERNEL) \
  $(QEMU_DRIVES)
# The raspi3b boots take the SD-card image instead of the virtio swap disk.
BOOT_DISK := $(if $(filter raspi3b,$(BOARD)),image $(if $(filter 1,$(RASPI_DTB)),build/raspi3b/raspi3b.dtb,),disk-image)

.PHONY: all kernel run test test-host test-scripts test-kernels test-kernel test-panic test-lowmem bench debug deps clean disk-image image

all: kernel
kernel: $(ELF) $(if $(filter aarch64,$(ARCH)),$(IMAGE),)

$(BUILD)/kernel.o: $(SWIFT_SOURCES) Makefile
	@mkdir -p $(dir $@)
	$(SWIFTC) $(SWIFTFLAGS) -c $(SWIFT_SOURCES) -o $@

$(BUILD)/boot/%.o: Boot/$(ARCH)/%.S Makefile
	@mkdir -p $(dir $@)
	$(CLANG) --target=$(TRIPLE) $(ARCH_CFLAGS) -g -c $< -o $@

$(ELF): $(BUILD)/kernel.o $(ASM_OBJECTS) linker/$(ARCH).ld
	$(LLD) $(LDFLAGS) -o $@ $(BUILD)/kernel.o $(ASM_OBJECTS) $(wildcard $(UNICODE_TABLES))
	@$(SWIFT_BIN)/llvm-objdump -h $@ | awk '$$2 ~ /^\.(text|rodata|data|bss)$$/ {print "  " $$2 " size 0x" $$3}'

$(IMAGE): $(ELF)
	$(OBJCOPY) -O binary $< $@

deps:
	@scripts/ensure-deps.sh --need-qemu

disk-image:
	$(PYTHON) scripts/make-disk-image.py $(DISK_IMAGE)

build/raspi3b/raspi3b.dtb: Boot/aarch64/raspi3b.dts
	@mkdir -p $(dir $@)
	dtc -q -I dts -O dtb -o $@ $<

# SD card for a Raspberry Pi 3B: firmware + config.txt + kernel8.img on FAT, then swap.
image:
	@scripts/ensure-deps.sh --need-image
	$(MAKE) kernel ARCH=aarch64 BOARD=raspi3b
	$(PYTHON) scripts/make-sd-image.py --kernel build/raspi3b/kernel8.img --output $(SD_IMAGE)

run: deps kernel $(BOOT_DISK)
	$(PYTHON) scripts/ktap_run.py --mode run --target $(TARGET_NAME) --elf $(ELF) \
	  --log build/ktap/$(TARGET_NAME).log --timeout $(TIMEOUT) --success-exit $(SUCCESS_EXIT) -- \
	  $(QEMU) $(QEMU_COMMON)

LOG_NAME ?= $(TARGET_NAME)

test-kernel: kernel $(BOOT_DISK)
	$(PYTHON) scripts/ktap_run.py --mode test --target $(LOG_NAME) --elf $(ELF) \
	  --log build/ktap/$(LOG_NAME).log --timeout $(TIMEOUT) --success-exit $(SUCCESS_EXIT) -- \
	  $(QEMU) $(QEMU_COMMON)
	$(if $(filter raspi3b,$(BOARD)),@grep -q "booted by $(BOOT_LOADER)" build/ktap/$(LOG_NAME).log \
	  && echo "$(LOG_NAME): memory came from the $(BOOT_LOADER)" && $(PYTHON) scripts/check-sd-image.py $(SD_IMAGE),$(PYTHON) scripts/check-disk-image.py $(DISK_IMAGE))

# A deliberate panic inside a test must fail the run, name the test and symbolize the trap.
# A stack overflow into the guard page must also end in such a panic (not a hang or reset).
PANIC_CASES_x86_64 := panic:panic_check.overflow_trap_panics_with_location \
  stack_overflow:stack_overflow_check.recursion_into_guard_page_panics
PANIC_CASES_aarch64 := $(PANIC_CASES_x86_64)

test-panic: kernel disk-image
	@mkdir -p build/ktap; set -e; for case in $(PANIC_CASES_$(ARCH)); do \
	  word=$${case%%:*}; test=$${case#*:}; name=$(ARCH)-$$word; \
	  ! $(PYTHON) scripts/ktap_run.py --mode test --target $$name --elf $(ELF) --quiet \
	    --log build/ktap/$$name.log --timeout $(TIMEOUT) --success-exit $(SUCCESS_EXIT) -- \
	    $(QEMU) $(QEMU_COMMON) -append selftest.$$word > build/ktap/$$name.report; \
	  grep -q "in self-test $$test" build/ktap/$$name.log; \
	  grep -q "PanicCheckSuite.swift" build/ktap/$$name.report; \
	  echo "test-panic $$name: the panic failed the run, named $$test and was symbolized"; \
	done

# The low-memory boot: LOWMEM_MEMORY of RAM, two blank 64 MiB swap disks (rewritten before
# every boot) and selftest.lowmem, so only swap_stress and swap_error run (Kernel/SelfTest/Registry.swift).
LOWMEM_MEMORY ?= 32M
LOWMEM_DISKS = build/disk/$(ARCH)-lowmem-swap0.img build/disk/$(ARCH)-lowmem-swap1.img
# A third, 4 MiB disk on QEMU's blkdebug driver for the swap_error suite: EIO on writes of
# device pages 1-3 (sectors 8, 16, 24) and on reads of page 40 (sector 320).
LOWMEM_ERROR_DISK = build/disk/$(ARCH)-lowmem-eio.img
LOWMEM_BLKDEBUG = build/disk/$(ARCH)-lowmem-blkdebug.conf
test-lowmem: QEMU_MEMORY = $(LOWMEM_MEMORY)
test-lowmem: QEMU_DRIVES = $(foreach n,0 1,-drive if=none,id=lowswap$(n),file=build/disk/$(ARCH)-lowmem-swap$(n).img,format=raw \
  $(subst drive=swap,drive=lowswap$(n),$(QEMU_DISK_DEVICE))) \
  -drive if=none,id=lowerr,format=raw,file=blkdebug:$(LOWMEM_BLKDEBUG):$(LOWMEM_ERROR_DISK) \
  $(subst drive=swap,drive=lowerr,$(QEMU_DISK_DEVICE))
test-lowmem: kernel
	@mkdir -p build/disk build/ktap
	$(PYTHON) -c 'import sys; [open(f, "wb").truncate(64 << 20) for f in sys.argv[1:]]' $(LOWMEM_DISKS)
	$(PYTHON) -c 'import sys; open(sys.argv[1], "wb").truncate(4 << 20)' $(LOWMEM_ERROR_DISK)
	@for rule in write:8 write:16 write:24 read:320; do \
	  printf '[inject-error]\nevent = "%s_aio"\niotype = "%s"\nerrno = "5"\nsector = "%s"\nonce = "off"\n\n' \
	    $${rule%%:*} $${rule%%:*} $${rule#*:}; done > $(LOWMEM_BLKDEBUG)
	$(PYTHON) scripts/ktap_run.py --mode test --target $(ARCH)-lowmem --elf $(ELF) \
	  --log build/ktap/$(ARCH)-lowmem.log --timeout $(TIMEOUT) --success-exit $(SUCCESS_EXIT) -- \
	  $(QEMU) $(QEMU_COMMON) -append selftest.lowmem

test-kernels:
	$(MAKE) test-kernel ARCH=x86_64
	$(MAKE) test-kernel ARCH=aarch64
	$(MAKE) test-kernel ARCH=aarch64 ENTRY_EL2=off LOG_NAME=aarch64-el1
	$(MAKE) test-lowmem ARCH=x86_64
	$(MAKE) test-lowmem ARCH=aarch64
	$(MAKE) test-panic ARCH=x86_64
	$(MAKE) test-panic ARCH=aarch64
	$(MAKE) test-kernel ARCH=aarch64 BOARD=raspi3b
	$(MAKE) test-kernel ARCH=aarch64 BOARD=raspi3b RASPI_DTB=1 LOG_NAME=raspi3b-dtb

test-host:
	$(SWIFT) test

test-scripts:
	$(PYTHON) -m unittest discover -s scripts -p 'test_*.py'

test: deps
	$(MAKE) test-scripts
	$(MAKE) test-host
	$(MAKE) test-kernels
	@echo "==== make test: in-kernel results, all boots ===="
	@$(PYTHON) scripts/ktap_summary.py build/ktap/x86_64.log build/ktap/aarch64.log build/ktap/aarch64-el1.log \
	  build/ktap/x86_64-lowmem.log build/ktap/aarch64-lowmem.log \
	  build/ktap/raspi3b.log build/ktap/raspi3b-dtb.log

bench: deps disk-image
	$(MAKE) kernel VARIANT=bench ARCH=$(ARCH)
	$(PYTHON) scripts/ktap_run.py --mode bench --target $(ARCH) --elf $(BUILD)-bench/kernel.elf \
	  --log build/ktap/bench-$(ARCH).log --timeout $(TIMEOUT) --success-exit $(SUCCESS_EXIT) -- \
	  $(QEMU) $(subst $(BUILD)/,$(BUILD)-bench/,$(QEMU_COMMON))

debug: deps kernel disk-image
	@echo "QEMU is halted with a gdb stub on :1234. In another terminal:"
	@echo "  gdb $(ELF) -ex 'target remote :1234'   (gdb-multiarch for aarch64)"
	$(QEMU) $(QEMU_COMMON) -S -s

clean:
	rm -rf build
