//! The processes the sampler knows: listing /proc (births, exits, reused pids), reading a
//! process's socket fds, and checking the listeners' holders between listings (module docs of
//! [`super`], step 1).

use super::{passenger, Cost, Proc, Sampler, MAX_PIDFDS};
use crate::sys::procfs::ProcRoot;
use crate::sys::sock::Diag;
use std::collections::HashSet;
use std::time::Instant;

impl<D: Diag> Sampler<D> {
    pub(super) fn scan_fds(proc: &ProcRoot, cost: &mut Cost, pid: i32, p: &mut Proc) {
        cost.fd_scans += 1;
        match proc.socket_inodes(pid) {
            Ok(s) => p.sockets = s.into_iter().collect(),
            Err(error) => {
                tracing::debug!(message = "Skipping a process: fds unreadable.", pid, %error);
                p.sockets.clear();
            }
        }
    }

    pub(super) fn scan_new(&mut self, pid: i32, ino: u64) -> Proc {
        let mut p = Proc {
            ino,
            ..Proc::default()
        };
        match self.proc.netns(pid) {
            Ok(ns) => p.netns = Some(ns),
            Err(error) => {
                tracing::debug!(message = "Skipping a process: no network namespace (exited?).", pid, %error);
                return p;
            }
        }
        if self.own_netns.is_some_and(|o| Some(o) != p.netns) {
            // A sidecar samples its own pod only; young, so a switch into it is still seen.
            p.first_seen = Some(Instant::now());
            return p;
        }
        match self.proc.stat(pid) {
            Ok(st) => (p.ppid, p.start) = (st.ppid, st.start),
            Err(_) => p.ppid = self.proc.ppid(pid).unwrap_or(0),
        }
        p.comm = self.proc.comm(pid).unwrap_or_default();
        // Only Passenger's agents pay for a command line read here.
        p.passenger_core = p.comm == passenger::AGENT_COMM
            && self.proc.cmdline(pid).is_ok_and(|a| passenger::is_core(&a));
        p.first_seen = Some(Instant::now());
        Self::scan_fds(&self.proc, &mut self.cost, pid, &mut p);
        p
    }

    /// Whether the process known as `pid` is still the one under that pid, after its /proc
    /// inode changed to `ino`: the same start time means the same process (procfs may give a
    /// live process a new inode); the inode is updated then.
    pub(super) fn same_process(&mut self, pid: i32, ino: u64) -> bool {
        let Some(p) = self.procs.get_mut(&pid) else {
            return false;
        };
        match self.proc.stat(pid) {
            Ok(st) if st.start == p.start => {
                p.ino = ino;
                true
            }
            _ => false,
        }
    }

    /// Lists /proc: forgets exited processes, scans new ones and pids reused by another.
    pub(super) fn list(&mut self) -> bool {
        self.cost.listings += 1;
        let pids = match self.proc.pids_with_ino() {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(message = "Cannot list processes.", root = %self.proc.0.display(), %error);
                return false;
            }
        };
        let live: HashSet<i32> = pids.iter().map(|(p, _)| *p).collect();
        self.procs.retain(|p, _| live.contains(p));
        self.pidfds.retain(|p, _| live.contains(p));
        self.passenger.retain(|p, _| live.contains(p));
        for (pid, ino) in pids {
            let known = match self.procs.get(&pid) {
                None => false,
                Some(p) if p.ino == ino => true,
                Some(_) => self.same_process(pid, ino),
            };
            if !known {
                self.pidfds.remove(&pid);
                let p = self.scan_new(pid, ino);
                self.procs.insert(pid, p);
            }
        }
        true
    }

    /// Between listings: drops holders that exited and rescans pids a new process took.
    pub(super) fn check_holders(&mut self) {
        let (polled, rest): (Vec<i32>, Vec<i32>) = std::mem::take(&mut self.holder_pids)
            .into_iter()
            .partition(|p| self.pidfds.contains_key(p));
        let mut rest = rest;
        if !polled.is_empty() {
            use std::os::fd::AsFd;
            let fds: Vec<_> = polled.iter().map(|p| self.pidfds[p].as_fd()).collect();
            match crate::sys::procfs::exited(&fds) {
                Ok(gone) => {
                    for (pid, gone) in polled.iter().zip(gone) {
                        if gone {
                            self.procs.remove(pid);
                            self.pidfds.remove(pid);
                        }
                    }
                }
                Err(_) => rest.extend(polled),
            }
        }
        for pid in rest {
            let Some(known) = self.procs.get(&pid).map(|p| p.ino) else {
                continue;
            };
            match self.proc.ino(pid) {
                Ok(ino) if ino == known || self.same_process(pid, ino) => {}
                Ok(ino) => {
                    self.pidfds.remove(&pid);
                    let p = self.scan_new(pid, ino);
                    self.procs.insert(pid, p);
                }
                Err(_) => {
                    self.procs.remove(&pid);
                    self.pidfds.remove(&pid);
                }
            }
        }
    }

    /// Keeps a pidfd for every holder (at most [`MAX_PIDFDS`]), opened only while the pid is
    /// still the process that was scanned; closes those of processes no longer holding one.
    pub(super) fn track_holders(&mut self) {
        if !self.own_pids {
            return;
        }
        let holders = &self.holder_pids;
        self.pidfds.retain(|p, _| holders.contains(p));
        for &pid in &self.holder_pids {
            if self.pidfds.len() >= MAX_PIDFDS || self.pidfds.contains_key(&pid) {
                continue;
            }
            let Some(known) = self.procs.get(&pid).map(|p| p.ino) else {
                continue;
            };
            if let Ok(fd) = crate::sys::procfs::pidfd_open(pid) {
                if self.proc.ino(pid).ok() == Some(known) {
                    self.pidfds.insert(pid, fd);
                }
            }
        }
    }

    /// Rescans the fds of `pids` (those `procs` knows).
    pub(super) fn rescan(&mut self, pids: impl IntoIterator<Item = i32>) {
        for pid in pids {
            if let Some(p) = self.procs.get_mut(&pid) {
                Self::scan_fds(&self.proc, &mut self.cost, pid, p);
            }
        }
    }
}
