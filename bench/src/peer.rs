//! The peers of a run: a module loaded, initialised, logged in, with its
//! sessions open; its memory footprint; its round-trip counter.

use std::collections::HashSet;
use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::counter::Counter;
use crate::memory::vm_rss_kib;
use crate::ops::{self, Env, NotRun, OpName, Prepared, Sizes};
use crate::report::Context;
use crate::{BenchError, RunArgs, ck};

/// A module under measurement, set up.
pub struct Peer {
    pkcs11: Pkcs11,
    pub slot: Slot,
    pub setup: Session,
    pub sessions: Vec<Session>,
    listed: HashSet<u64>,
    pub counter: Option<Counter>,
    pub context: Context,
}

/// What `--module` or one `--compare` value names, and how to reach it.
pub struct PeerSpec {
    name: String,
    module: PathBuf,
    pin: String,
    counter: Option<Counter>,
    server_pid: Option<u32>,
}

impl Peer {
    /// Whether the token supports `mechanism`. cryptoki's list leaves out
    /// every mechanism it has no name for (all vendor-defined ones), so
    /// what is not in it is asked for by number: C_GetMechanismInfo answers
    /// CKR_MECHANISM_INVALID for what the token does not support.
    fn supported(&self, mechanism: u64) -> bool {
        self.listed.contains(&mechanism)
            || MechanismType::try_from(mechanism)
                .or_else(|_| MechanismType::new_vendor_defined(mechanism))
                .and_then(|m| self.pkcs11.get_mechanism_info(self.slot, m))
                .is_ok()
    }

    /// Makes `op` ready on this module.
    pub fn prepare(&self, op: OpName, sizes: Sizes) -> Result<Prepared, NotRun> {
        let supported = |m| self.supported(m);
        let env = Env {
            pkcs11: &self.pkcs11,
            slot: self.slot,
            session: &self.setup,
            supported: &supported,
        };
        ops::prepare(op, env, sizes)
    }

    pub fn close(self) -> Result<(), BenchError> {
        drop(self.sessions);
        let _ = self.setup.logout();
        drop(self.setup);
        self.pkcs11.finalize().map_err(ck("C_Finalize"))
    }
}

/// The slot to measure: `--slot`, the token labelled `--token-label`, or the
/// first slot with an initialised token.
fn find_slot(pkcs11: &Pkcs11, args: &RunArgs) -> Result<Slot, BenchError> {
    let slots = pkcs11.get_slots_with_token().map_err(ck("C_GetSlotList"))?;
    if let Some(id) = args.slot {
        return slots
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| BenchError::Usage(format!("no slot {id} with a token")));
    }
    for slot in slots {
        let info = pkcs11.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        let wanted = match &args.token_label {
            Some(label) => info.label().trim_end() == label,
            None => info.token_initialized(),
        };
        if wanted {
            return Ok(slot);
        }
    }
    Err(BenchError::Usage(match &args.token_label {
        Some(label) => format!("no token labelled {label:?}"),
        None => "no slot with an initialised token".into(),
    }))
}

/// Loads and sets up one peer with `sessions` sessions; measures the
/// resident memory the module adds to this process, and the server's
/// growth per session if its pid is known.
pub fn open_peer(spec: PeerSpec, args: &RunArgs, sessions: usize) -> Result<Peer, BenchError> {
    let rss_before = vm_rss_kib("self");
    let pkcs11 =
        Pkcs11::new(&spec.module).map_err(ck(&format!("loading {}", spec.module.display())))?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(ck("C_Initialize"))?;
    let info = pkcs11.get_library_info().map_err(ck("C_GetInfo"))?;
    let library = format!(
        "{} {} ({})",
        info.library_description().trim_end(),
        info.library_version(),
        info.manufacturer_id().trim_end()
    );
    let slot = find_slot(&pkcs11, args)?;
    let listed: HashSet<u64> = pkcs11
        .get_mechanism_list(slot)
        .map_err(ck("C_GetMechanismList"))?
        .into_iter()
        .map(|m| *m)
        .collect();
    // The session that makes the keys (session objects) and keeps them
    // alive; logging in on it logs in every session of the application.
    let setup = pkcs11.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    match setup.login(UserType::User, Some(&AuthPin::new(spec.pin.clone().into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(ck("C_Login")(e)),
    }
    let server = |pid: u32| vm_rss_kib(&pid.to_string());
    let server_before = spec.server_pid.and_then(server);
    let mut opened = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        opened.push(
            pkcs11
                .open_rw_session(slot)
                .map_err(ck("C_OpenSession (the measured sessions)"))?,
        );
    }
    let server_after = spec.server_pid.and_then(server);
    let client_rss_kib = rss_before.zip(vm_rss_kib("self")).map(|(b, a)| a - b);
    let server_rss_per_session_b = server_before
        .zip(server_after)
        .filter(|_| sessions > 0)
        .map(|(b, a)| (a - b) as f64 * 1024.0 / sessions as f64);
    Ok(Peer {
        context: Context {
            peer: spec.name,
            module: spec.module.display().to_string(),
            library,
            warmup_s: args.warmup,
            client_rss_kib,
            server_rss_per_session_b,
        },
        pkcs11,
        slot,
        setup,
        sessions: opened,
        listed,
        counter: spec.counter,
    })
}

/// `[NAME=]PATH`: the peer's name and module.
fn parse_peer(value: &str) -> (Option<String>, PathBuf) {
    match value.split_once('=') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => {
            (Some(name.to_string()), PathBuf::from(path))
        }
        _ => (None, PathBuf::from(value)),
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn specs(args: &RunArgs) -> Result<Vec<PeerSpec>, BenchError> {
    let counter = |cmd: &Option<String>| {
        cmd.as_ref()
            .map(|c| Counter::new(c.clone(), args.count_metric.clone()))
    };
    if let Some(module) = &args.module {
        return Ok(vec![PeerSpec {
            name: args.peer.clone().unwrap_or_else(|| file_name(module)),
            module: module.clone(),
            pin: args.user_pin.clone(),
            counter: counter(&args.count_cmd),
            server_pid: args.server_pid,
        }]);
    }
    let [a, b] = args.compare.as_slice() else {
        return Err(BenchError::Usage(
            "give --module PATH, or --compare A B".into(),
        ));
    };
    let (name_a, module_a) = parse_peer(a);
    let (name_b, module_b) = parse_peer(b);
    let name_a = name_a.unwrap_or_else(|| file_name(&module_a));
    let mut name_b = name_b.unwrap_or_else(|| file_name(&module_b));
    if name_b == name_a {
        name_b.push_str("-b");
    }
    Ok(vec![
        PeerSpec {
            name: name_a,
            module: module_a,
            pin: args.user_pin.clone(),
            counter: counter(&args.count_cmd),
            server_pid: args.server_pid,
        },
        PeerSpec {
            name: name_b,
            module: module_b,
            pin: args
                .user_pin_b
                .clone()
                .unwrap_or_else(|| args.user_pin.clone()),
            counter: counter(&args.count_cmd_b),
            server_pid: args.server_pid_b,
        },
    ])
}

/// Round trips per operation: the counter around `n` operations on one
/// session, nothing else running.
pub fn count_round_trips(peer: &Peer, prepared: &Prepared, n: u64) -> Option<f64> {
    let counter = peer.counter.as_ref()?;
    let session = peer.sessions.first().unwrap_or(&peer.setup);
    let mut scratch = Vec::new();
    let result = (|| {
        let before = counter.read()?;
        for _ in 0..n {
            prepared
                .run(session, &mut scratch)
                .map_err(|e| ops::ck_error(&e))?;
        }
        let after = counter.read()?;
        Ok::<f64, String>((after - before) / n.max(1) as f64)
    })();
    match result {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!(
                "hsmlink-bench: {}: round trips not counted: {e}",
                peer.context.peer
            );
            None
        }
    }
}

/// Pins this process (and every thread it starts from now on, the
/// module's included) to CPU `cpu`.
pub fn pin_to(cpu: usize) -> Result<(), BenchError> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|e| BenchError::Usage(format!("--pin {cpu}: {e}")))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| BenchError::Usage(format!("--pin {cpu}: sched_setaffinity: {e}")))
}
