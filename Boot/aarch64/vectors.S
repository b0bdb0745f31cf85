/*
 * aarch64 exception vectors: every entry builds a TrapFrame on the current stack and calls
 * the Swift dispatcher `aarch64_trap_dispatch(frame)`.
 *
 * Invariants: the frame layout matches `TrapFrame` in Arch/aarch64/Traps.swift: x0..x30,
 * the interrupted sp, elr, spsr, esr, far, the vector kind (0..15, the entry's index in the
 * table) and one pad word, then q0..q31, fpsr and fpcr (Swift uses the SIMD registers, so
 * they must survive a trap that returns). The dispatcher may change elr (to skip a brk) and
 * the saved registers; they are reloaded before eret. sp stays 16-byte aligned.
 *
 * Stack overflow: before anything is stored, each entry checks (without a spare register,
 * by parking x0 in sp) whether the frame would start below the boot stack — the stack is
 * 64 KiB on a 128 KiB boundary, so that is bit 16 of the new sp. If so it switches to the
 * overflow stack (tpidr_el1 and tpidrro_el0 serve as scratch: one CPU, no user threads yet)
 * and the dispatcher panics on the guard-page fault instead of faulting forever below it.
 * The frame then records the overflow stack's sp, and FAR holds the guard-page address.
 */
#define GPR_AREA   304
#define FP_AREA    528
#define FRAME_SIZE (GPR_AREA + FP_AREA)

    .macro VECTOR kind
    .p2align 7
    sub sp, sp, #FRAME_SIZE
    add sp, sp, x0                       /* sp' = new sp + x0 */
    sub x0, sp, x0                       /* x0 = new sp */
    tbnz x0, #16, 1f                     /* below the 128 KiB-aligned stack: overflow */
    sub x0, sp, x0                       /* x0 restored */
    sub sp, sp, x0                       /* sp = new sp */
    stp x0, x1, [sp, #0]
    mov x1, #\kind
    b trap_common
1:  msr tpidr_el1, x0                    /* new sp, for the record */
    sub x0, sp, x0                       /* x0 restored */
    msr tpidrro_el0, x0
    ldr x0, =overflow_stack_top
    mov sp, x0
    mrs x0, tpidrro_el0
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp, #0]
    mov x1, #\kind
    b trap_common
    .ltorg
    .endm

    .section .text.exception_vectors, "ax"
    .p2align 11
    .globl exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

trap_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    add x2, sp, #FRAME_SIZE              /* sp before the exception */
    stp x30, x2, [sp, #240]
    mrs x2, elr_el1
    mrs x3, spsr_el1
    stp x2, x3, [sp, #256]
    mrs x2, esr_el1
    mrs x3, far_el1
    stp x2, x3, [sp, #272]
    stp x1, xzr, [sp, #288]              /* kind, pad */
    add x2, sp, #GPR_AREA
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mrs x3, fpsr
    mrs x4, fpcr
    add x5, x2, #512
    stp x3, x4, [x5]

    mov x0, sp
    ldr x29, [sp, #232]                  /* frame chain continues through the interrupted code */
    bl aarch64_trap_dispatch

    add x2, sp, #GPR_AREA
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    add x5, x2, #512
    ldp x3, x4, [x5]
    msr fpsr, x3
    msr fpcr, x4
    ldp x2, x3, [sp, #256]
    msr elr_el1, x2
    msr spsr_el1, x3
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldr x30, [sp, #240]
    ldp x0, x1, [sp, #0]
    add sp, sp, #FRAME_SIZE
    eret
