/*
 * Fault-tolerant accesses: a load or store that may fault on a bad address (like copyin and
 * copyout). If the fault is not resolved (by the pmap or vm_fault), the trap code sees the
 * faulting pc is one of the `probe_*_access` instructions and resumes at `probe_recover`,
 * which returns -1, instead of panicking. The access instructions are the only ones that may
 * fault: everything else here touches only registers.
 *   int probe_read_u64(const uint64_t *address, uint64_t *out)   0, or -1 on a fault
 *   int probe_write_u64(uint64_t *address, uint64_t value)        0, or -1 on a fault
 *   uintptr_t probe_read_pc(void), probe_write_pc(void), probe_recover_pc(void)
 */
    .macro FUNC name
    .section .text.probe, "ax"
    .globl \name
    .type \name, %function
\name:
    .endm

FUNC probe_read_u64
probe_read_access:
    ldr x2, [x0]
    str x2, [x1]
    mov w0, #0
    ret
FUNC probe_write_u64
probe_write_access:
    str x1, [x0]
    mov w0, #0
    ret
probe_recover:
    mov w0, #-1
    ret
FUNC probe_read_pc
    adr x0, probe_read_access
    ret
FUNC probe_write_pc
    adr x0, probe_write_access
    ret
FUNC probe_recover_pc
    adr x0, probe_recover
    ret
