//! Resource ids and scopes from untrusted text: never a panic, and what
//! parses prints back to itself and contains itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockbox_core::{ResourceId, Scope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ResourceId::parse(text) {
        let printed = id.to_string();
        let again = ResourceId::parse(&printed).expect("a printed id parses");
        assert_eq!(again, id, "{text:?} → {printed:?}");
        assert!(id.contains(&id));
        let _ = id.subscription();
    }
    if let Ok(scope) = Scope::parse(text) {
        let printed = scope.to_string();
        assert_eq!(
            Scope::parse(&printed).expect("a printed scope parses"),
            scope
        );
    }
});
