//! An audit export file from untrusted bytes, read and verified as the
//! offline verifier does: never a panic, whatever the lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockbox_core::audit::export::{ExportVerifier, parse_line};
use lockbox_core::{Chain, CheckpointSigner, TenantId};

fuzz_target!(|data: &[u8]| {
    let tenant = TenantId::parse("contoso").expect("a tenant id");
    let mut verifier = ExportVerifier::new(Chain::Tenant(tenant));
    for line in data.split(|b| *b == b'\n') {
        verifier.line(line);
        if let Ok(text) = std::str::from_utf8(line) {
            let _ = parse_line(text);
        }
    }
    let key = CheckpointSigner::from_secret_bytes(&[7; 32]).public_key();
    let _ = verifier.finish(&[key]);
});
