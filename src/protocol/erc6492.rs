//! EIP-6492: the signature of a contract wallet that does not exist yet, wrapped with what deploys it:
//! `abi.encode(address factory, bytes factoryCalldata, bytes signature) ‖ MAGIC`. The wallet's own
//! (ERC-1271) signature is the inner one, valid once the factory call has run. Plain data, no I/O.

use alloy::primitives::{b256, Address, Bytes, B256};
use alloy::sol_types::SolValue;

/// The 32 bytes every wrapped signature ends with.
pub const MAGIC: B256 = b256!("6492649264926492649264926492649264926492649264926492649264926492");

/// A wrapped signature, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The contract whose call deploys the wallet.
    pub factory: Address,
    /// That call.
    pub calldata: Bytes,
    /// The wallet's own signature, checked with ERC-1271 once it is deployed.
    pub signature: Bytes,
}

/// The wrapper of `sig`: `None` when it does not end with [`MAGIC`]; `Some(Err(()))` when it does but the
/// rest does not decode (a malformed wrapper, never an unwrapped signature).
pub fn unwrap(sig: &[u8]) -> Option<Result<Wrapped, ()>> {
    let body = sig.strip_suffix(MAGIC.as_slice())?;
    Some(
        <(Address, Bytes, Bytes)>::abi_decode_params(body)
            .map(|(factory, calldata, signature)| Wrapped {
                factory,
                calldata,
                signature,
            })
            .map_err(drop),
    )
}

/// The wallet's own signature in `sig`: the inner one when wrapped, `sig` itself otherwise; `None` for a
/// malformed wrapper.
pub fn inner(sig: &Bytes) -> Option<Bytes> {
    match unwrap(sig) {
        Some(Ok(w)) => Some(w.signature),
        Some(Err(())) => None,
        None => Some(sig.clone()),
    }
}

/// `w` as a wrapped signature.
pub fn wrap(w: &Wrapped) -> Bytes {
    let mut out = (w.factory, w.calldata.clone(), w.signature.clone()).abi_encode_params();
    out.extend_from_slice(MAGIC.as_slice());
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_signature_comes_apart_into_factory_call_and_inner_signature() {
        let w = Wrapped {
            factory: Address::repeat_byte(0x11),
            calldata: Bytes::from(vec![1, 2, 3]),
            signature: Bytes::from(vec![7; 65]),
        };
        let sig = wrap(&w);
        assert!(sig.ends_with(MAGIC.as_slice()));
        assert_eq!(unwrap(&sig), Some(Ok(w)));
        assert_eq!(unwrap(&[7; 65]), None, "an unwrapped signature");
        let mut garbage = vec![0xab; 10];
        garbage.extend_from_slice(MAGIC.as_slice());
        assert_eq!(unwrap(&garbage), Some(Err(())), "the suffix without a wrapper");
    }
}
