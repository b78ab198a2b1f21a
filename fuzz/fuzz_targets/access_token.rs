//! Signed access tokens from untrusted text, verified against published
//! keys: never a panic, and a token that verifies is one that is valid now
//! (`nbf ≤ now < exp`) and names the expected issuer and audience.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockbox_api as api;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let jwks = api::Jwks {
        keys: vec![api::Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            // RFC 8037's example Ed25519 key.
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: "fuzz".into(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
        }],
    };
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let expected = lockbox_server::access_token::Expected {
        issuer: "https://lockbox.example.com",
        audience: "https://web-gw.example.com",
    };
    if let Ok(claims) = lockbox_server::access_token::verify(token, &jwks, &expected, now) {
        assert!(
            claims.exp > now.timestamp(),
            "an expired token verified: {claims:?}"
        );
        assert!(
            claims.nbf <= now.timestamp(),
            "a token not valid yet verified: {claims:?}"
        );
        assert_eq!(claims.iss, expected.issuer, "another issuer's token verified");
        assert_eq!(claims.aud, expected.audience, "another audience's token verified");
    }
});
