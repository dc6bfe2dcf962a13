//! Resource quantities as the kubelet needs them: CPU in millicores and
//! memory/storage in bytes, over the machinery's exact parser.
//!
//! Upstream counterpart: apimachinery's `resource.Quantity` (`MilliValue`
//! and `Value`, both rounding up).

use rkube_machinery::quantity;

/// Millicores of a CPU quantity (`100m`, `1.5`, `2`); `None` when it is
/// malformed or out of range.
pub fn milli_cpu(s: &str) -> Option<i64> {
    quantity::parse(s).and_then(|q| i64::try_from(q.milli_value()).ok())
}

/// Bytes of a memory or storage quantity (`64Mi`, `1G`, `2e3`); `None`
/// when it is malformed or out of range.
pub fn bytes(s: &str) -> Option<i64> {
    quantity::parse(s).and_then(|q| i64::try_from(q.value()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory() {
        assert_eq!(milli_cpu("100m"), Some(100));
        assert_eq!(milli_cpu("1.5"), Some(1500));
        assert_eq!(milli_cpu("2"), Some(2000));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("x"), None);
        assert_eq!(bytes("1Qi"), None);
    }
}
