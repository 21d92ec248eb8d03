//! Webhook signatures, as Stripe signs: `Bulkhead-Signature: t=<unix seconds>,v1=<hex>`
//! where `v1` is HMAC-SHA256, keyed by the endpoint's secret, over `<t>.<raw body>`. The
//! timestamp inside the signed bytes lets a receiver refuse replays of old deliveries.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header carrying the signature.
pub(crate) const HEADER: &str = "bulkhead-signature";

/// A new endpoint secret: `whsec_` and 32 random bytes, URL-safe base64.
pub(crate) fn new_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The `Bulkhead-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub(crate) fn header_value(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body)))
}

fn mac(secret: &SecretString, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return Vec::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_a_dot_and_the_body() {
        let secret = SecretString::from("whsec_test");
        let header = header_value(&secret, 1_700_000_000, br#"{"a":1}"#);
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let mut expected = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        expected.update(br#"1700000000.{"a":1}"#);
        assert_eq!(header, format!("t=1700000000,v1={}", hex::encode(expected.finalize().into_bytes())));
        // The test vector of docs/notifications.md.
        assert_eq!(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.expose_secret().starts_with("whsec_"));
        assert_eq!(a.expose_secret().len(), 6 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
