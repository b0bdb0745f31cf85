// SeededRandom: SplitMix64, the one seeded generator of the project (self-tests, host tests,
// trace generation), so every random run can be replayed from its seed.
// Invariants: the same seed yields the same sequence on every platform; not cryptographic.

/// Steele, Lea and Flood's SplitMix64: 64 bits of state, full period, good avalanche.
public struct SplitMix64: RandomNumberGenerator {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0 ..< bound` (0 when `bound` is 0). The modulo bias is negligible for the
    /// small bounds tests use.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        bound == 0 ? 0 : next() % bound
    }
}
