//! The server's request dispatch as an authenticated tenant: requests from
//! the fuzzer go through `hsmlink_server::handle` (what the transport calls
//! for every frame) against a real soft-HSM partition over SQLite, with
//! sessions logged in and keys in place (see `hsmlink_fuzz::server`). No
//! request may panic, and every answer must encode and round-trip.
#![no_main]
use std::sync::Mutex;

use hsmlink_fuzz::server::World;

static WORLD: Mutex<Option<World>> = Mutex::new(None);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut world = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    world.get_or_insert_with(World::new).run(data);
});
