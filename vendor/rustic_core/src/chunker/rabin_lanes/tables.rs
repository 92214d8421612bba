// lifeboat patch: new file. Rabin lookup tables built by linearity and cached per polynomial,
// instead of `Rabin64::new_with_polynom` (polynomial division, ~0.2 ms) for every file.

//! Lookup tables of the Rabin fingerprint over GF(2)\[x\] modulo a polynomial `P`, and a
//! process-wide cache of them.
//!
//! The fingerprint of a 64-byte window `b₀ … b₆₃` (oldest first) is
//! `Σ bᵢ·x^(8·(63−i)) mod P`, exactly the value `rustic_cdc::Rabin64` keeps in `hash`.
//! It is linear in the bytes, so each table is the XOR of at most eight basis values.
//!
//! This module does not decide where to cut; see the parent module.

use std::sync::{Arc, Mutex, PoisonError};

/// Bytes in the rolling window, as `Rabin64::new_with_polynom(6, _)` uses.
pub(super) const WINDOW: usize = 64;

/// Polynomials kept in the cache; a repository has one, tests use a few dozen.
const CACHE_CAPACITY: usize = 16;

/// Tables for one polynomial.
#[derive(Debug)]
pub(crate) struct RabinTables {
    /// The polynomial `P` the tables belong to.
    poly: u64,
    /// `deg(P) − 8`: where the byte that overflows on `<< 8` sits.
    shift: u32,
    /// `j·x^deg(P) mod P | j << deg(P)`: XOR-ing it after `<< 8` clears the overflowing byte
    /// `j` and adds its remainder. Identical to `Rabin64::calculate_mod_table`.
    mod_table: [u64; 256],
    /// `b·x^(8·64) mod P`: removes the byte leaving the window. Unlike `rustic_cdc`'s out table
    /// (`b·x^(8·63)`, applied before the shift) it is applied after the shift, which takes the
    /// lookup off the hash's dependency chain.
    out_table: [u64; 256],
}

impl RabinTables {
    /// Smallest degree the tables support (`shift` must not be negative).
    const MIN_DEGREE: u32 = 8;
    /// Largest degree for which `hash << 8` cannot overflow 64 bits. Above it `Rabin64` loses
    /// bits and its hash no longer depends on the window alone, so the lanes would cut
    /// elsewhere.
    const MAX_DEGREE: u32 = 56;

    /// Builds the tables for `poly`, or `None` if its degree is outside 8..=56.
    pub(crate) fn build(poly: u64) -> Option<Self> {
        if poly == 0 {
            return None;
        }
        let degree = poly.ilog2();
        if !(Self::MIN_DEGREE..=Self::MAX_DEGREE).contains(&degree) {
            return None;
        }
        let top = 1u64 << degree;
        // Multiplication by x modulo P of a reduced value.
        let times_x = |a: u64| {
            let a = a << 1;
            if a & top == 0 { a } else { a ^ poly }
        };

        // x^deg(P) mod P is P without its leading term.
        let mut mod_basis = [0u64; 8];
        let mut r = poly ^ top;
        for basis in &mut mod_basis {
            *basis = r;
            r = times_x(r);
        }

        let mut out_basis = [0u64; 8];
        let mut r = 1u64;
        for _ in 0..8 * WINDOW {
            r = times_x(r);
        }
        for basis in &mut out_basis {
            *basis = r;
            r = times_x(r);
        }

        let mut mod_table = linear_table(&mod_basis);
        for (j, entry) in (0u64..).zip(mod_table.iter_mut()) {
            *entry |= j << degree;
        }
        Some(Self {
            poly,
            shift: degree - 8,
            mod_table,
            out_table: linear_table(&out_basis),
        })
    }

    /// The tables for `poly` from the process-wide cache, built on first use; `None` if the
    /// degree is not supported (see [`RabinTables::build`]).
    pub(crate) fn cached(poly: u64) -> Option<Arc<Self>> {
        static CACHE: Mutex<Vec<Arc<RabinTables>>> = Mutex::new(Vec::new());

        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tables) = cache.iter().find(|t| t.poly == poly) {
            return Some(Arc::clone(tables));
        }
        let tables = Arc::new(Self::build(poly)?);
        if cache.len() == CACHE_CAPACITY {
            _ = cache.remove(0);
        }
        cache.push(Arc::clone(&tables));
        drop(cache);
        Some(tables)
    }

    /// `deg(P) − 8`.
    #[inline(always)]
    pub(super) const fn shift(&self) -> u32 {
        self.shift
    }

    /// Appends `byte` to a window fingerprint `h` that still has room (no byte leaves).
    ///
    /// `shift` must be `self.shift()`; callers pass a constant where they can so that the
    /// compiler emits an immediate shift.
    #[inline(always)]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the index is masked to 0..=255"
    )]
    pub(super) fn push(&self, shift: u32, h: u64, byte: u8) -> u64 {
        ((h << 8) | u64::from(byte)) ^ self.mod_table[((h >> shift) & 0xff) as usize]
    }

    /// Slides the window of fingerprint `h` by one byte: `byte_in` enters, `byte_out` (the byte
    /// 64 positions before it) leaves. Same result as `Rabin64::slide`.
    #[inline(always)]
    pub(super) fn roll(&self, shift: u32, h: u64, byte_in: u8, byte_out: u8) -> u64 {
        self.push(shift, h, byte_in) ^ self.out_table[usize::from(byte_out)]
    }

    /// Fingerprint of `window` (at most 64 bytes, oldest first) as if it followed zeros: what
    /// `Rabin64` holds after a reset and sliding in these bytes.
    pub(super) fn window_hash(&self, window: &[u8]) -> u64 {
        debug_assert!(window.len() <= WINDOW);
        let shift = self.shift;
        window.iter().fold(0, |h, &b| self.push(shift, h, b))
    }

    #[cfg(test)]
    pub(super) const fn mod_table(&self) -> &[u64; 256] {
        &self.mod_table
    }

    #[cfg(test)]
    pub(super) const fn out_table(&self) -> &[u64; 256] {
        &self.out_table
    }
}

/// The table of the GF(2)-linear map on bytes given by the images of the eight bits.
fn linear_table(basis: &[u64; 8]) -> [u64; 256] {
    let mut table = [0u64; 256];
    for j in 1..256usize {
        // j without its lowest set bit is smaller, hence already filled in.
        table[j] = table[j & (j - 1)] ^ basis[j.trailing_zeros() as usize];
    }
    table
}
