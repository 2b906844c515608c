//! Who this process is in a data-parallel run, read from the launcher's
//! environment, and the rendezvous that hands rank 0's NCCL id to the
//! other ranks.
//!
//! torchrun (and `torch.distributed.launch`) set `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`. Under Slurm's `srun`, with
//! none of those set, the rank comes from `SLURM_PROCID`, the world from
//! `SLURM_NTASKS`, the local rank from `SLURM_LOCALID`, and the master is
//! the first host of `SLURM_JOB_NODELIST` unless `MASTER_ADDR` names one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The launcher a [`Launch`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    /// `RANK`/`WORLD_SIZE` (torchrun and friends).
    Torchrun,
    /// Slurm's `SLURM_PROCID`/`SLURM_NTASKS`.
    Slurm,
}

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Launch {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank on this node: the CUDA device index this process uses.
    pub local_rank: usize,
    /// Host where rank 0 listens for the rendezvous.
    pub master_addr: String,
    /// Its port.
    pub master_port: u16,
    /// Where the values came from.
    pub launcher: Launcher,
}

/// torchrun's default rendezvous port.
pub const DEFAULT_PORT: u16 = 29500;

impl Launch {
    /// One process, no launcher.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_PORT,
            launcher: Launcher::Single,
        }
    }

    /// From this process's environment.
    ///
    /// # Errors
    /// As [`Launch::from_vars`].
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// From the variables `var` returns (testable without touching the
    /// process environment).
    ///
    /// # Errors
    /// A variable that is not a number, a rank outside the world, a world of
    /// zero, `RANK` without `WORLD_SIZE` or the reverse.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let num = |name: &str| -> Result<Option<usize>, Error> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| Error::LaunchVar {
                        name: name.to_owned(),
                        value: v.clone(),
                        expected: "a non-negative integer",
                    })
                })
                .transpose()
        };
        let port = match var("MASTER_PORT") {
            None => DEFAULT_PORT,
            Some(v) => v.trim().parse().map_err(|_| Error::LaunchVar {
                name: "MASTER_PORT".into(),
                value: v.clone(),
                expected: "a port number",
            })?,
        };
        let (rank, world, local, launcher, addr) = match (num("RANK")?, num("WORLD_SIZE")?) {
            (Some(rank), Some(world)) => {
                let local = num("LOCAL_RANK")?.unwrap_or(rank);
                let addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
                (rank, world, local, Launcher::Torchrun, addr)
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::UnpairedRank);
            }
            (None, None) => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                (Some(rank), Some(world)) if world > 1 => {
                    let local = num("SLURM_LOCALID")?.unwrap_or(0);
                    let addr = match var("MASTER_ADDR") {
                        Some(a) => a,
                        None => var("SLURM_JOB_NODELIST")
                            .or_else(|| var("SLURM_NODELIST"))
                            .and_then(|l| first_host(&l))
                            .ok_or(Error::NoSlurmHost)?,
                    };
                    (rank, world, local, Launcher::Slurm, addr)
                }
                _ => return Ok(Self::single()),
            },
        };
        if world == 0 || rank >= world {
            return Err(Error::RankOutsideWorld { rank, world });
        }
        Ok(Self {
            rank,
            world_size: world,
            local_rank: local,
            master_addr: addr,
            master_port: port,
            launcher,
        })
    }

    /// Whether more than one process takes part.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// Delivers rank 0's `payload` (exactly `len` bytes) to every rank over
    /// TCP at `master_addr:master_port`; returns it on every rank. Ranks
    /// other than 0 pass `None` and retry connecting until `timeout`.
    ///
    /// # Errors
    /// When the port cannot be bound, a peer does not arrive in time, or a
    /// peer belongs to another run (wrong world size or a duplicate rank).
    pub fn share_from_root(
        &self,
        payload: Option<&[u8]>,
        len: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + timeout;
        let err = |what: String| Error::Rendezvous(what);
        let addr = format!("{}:{}", self.master_addr, self.master_port);
        if self.rank == 0 {
            let payload = payload
                .filter(|p| p.len() == len)
                .ok_or_else(|| err(format!("rank 0 needs a payload of {len} bytes")))?;
            let listener = TcpListener::bind(("0.0.0.0", self.master_port)).map_err(|e| {
                err(format!(
                    "rank 0 cannot listen on port {}: {e}",
                    self.master_port
                ))
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|e| err(e.to_string()))?;
            let mut seen = vec![false; self.world_size];
            seen[0] = true;
            let mut pending = self.world_size - 1;
            while pending > 0 {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
                        s.set_read_timeout(Some(Duration::from_secs(30)))
                            .map_err(|e| err(e.to_string()))?;
                        let mut hello = [0u8; 12];
                        s.read_exact(&mut hello)
                            .map_err(|e| err(format!("from {peer}: {e}")))?;
                        let (rank, world) = parse_hello(&hello)
                            .ok_or_else(|| err(format!("{peer} is not a cxrlearn rank")))?;
                        if world != self.world_size || rank == 0 || rank >= world || seen[rank] {
                            return Err(err(format!(
                                "{peer} claims rank {rank} of {world}; this run has {} ranks and rank {rank} {}",
                                self.world_size,
                                if rank < seen.len() && seen[rank] {
                                    "already joined"
                                } else {
                                    "is invalid"
                                }
                            )));
                        }
                        s.write_all(payload)
                            .map_err(|e| err(format!("to {peer}: {e}")))?;
                        seen[rank] = true;
                        pending -= 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> =
                                (0..self.world_size).filter(|&r| !seen[r]).collect();
                            return Err(err(format!(
                                "ranks {missing:?} did not join within {timeout:?} on port {}",
                                self.master_port
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            return Ok(payload.to_vec());
        }
        loop {
            let attempt = addr
                .to_socket_addrs()
                .map_err(|e| err(format!("cannot resolve {addr}: {e}")))?
                .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok());
            if let Some(mut s) = attempt {
                s.set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_secs(1)),
                ))
                .map_err(|e| err(e.to_string()))?;
                s.write_all(&hello(self.rank, self.world_size))
                    .map_err(|e| err(format!("to {addr}: {e}")))?;
                let mut out = vec![0u8; len];
                s.read_exact(&mut out).map_err(|e| {
                    err(format!("rank 0 at {addr} refused rank {}: {e}", self.rank))
                })?;
                return Ok(out);
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "rank {} could not reach rank 0 at {addr} within {timeout:?}",
                    self.rank
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const MAGIC: &[u8; 4] = b"CXRL";

fn hello(rank: usize, world: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&(rank as u32).to_le_bytes());
    h[8..].copy_from_slice(&(world as u32).to_le_bytes());
    h
}

fn parse_hello(h: &[u8; 12]) -> Option<(usize, usize)> {
    (&h[..4] == MAGIC).then(|| {
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        (word(&h[4..8]), word(&h[8..]))
    })
}

/// The first host of a Slurm node list: `gpu[07-09,12],cpu1` gives `gpu07`.
pub fn first_host(nodelist: &str) -> Option<String> {
    let mut depth = 0;
    let first = nodelist
        .split(|c| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ',' && depth == 0
        })
        .next()?
        .trim();
    if first.is_empty() {
        return None;
    }
    match first.split_once('[') {
        None => Some(first.to_owned()),
        Some((prefix, rest)) => {
            let inner = rest.strip_suffix(']')?;
            let head = inner.split(',').next()?.split('-').next()?;
            Some(format!("{prefix}{head}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_torchrun_slurm_and_nothing() {
        assert_eq!(launch(&[]).unwrap(), Launch::single());
        let t = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(
            (
                t.rank,
                t.world_size,
                t.local_rank,
                t.master_addr.as_str(),
                t.master_port
            ),
            (3, 8, 1, "node7", 1234)
        );
        assert_eq!(t.launcher, Launcher::Torchrun);
        let s = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[003-004,9],login1"),
        ])
        .unwrap();
        assert_eq!(
            (
                s.rank,
                s.world_size,
                s.local_rank,
                s.master_addr.as_str(),
                s.master_port
            ),
            (5, 16, 1, "gpu003", DEFAULT_PORT)
        );
        assert_eq!(s.launcher, Launcher::Slurm);
        // A one-task Slurm step (a benchmark cell) is an ordinary process.
        assert_eq!(
            launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap(),
            Launch::single()
        );
        // torchrun's variables win over Slurm's.
        let both = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
        ]);
        assert_eq!(both.unwrap().world_size, 2);
    }

    #[test]
    fn bad_variables_are_named() {
        let e = |v: &[(&str, &str)]| launch(v).unwrap_err().to_string();
        assert!(e(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("RANK=\"x\""));
        assert!(
            e(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("rank 2 is outside a world of 2")
        );
        assert!(e(&[("WORLD_SIZE", "2")]).contains("RANK and WORLD_SIZE"));
        assert!(
            e(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "99999")])
                .contains("MASTER_PORT")
        );
        assert!(e(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")]).contains("SLURM_JOB_NODELIST"));
    }

    #[test]
    fn first_hosts_of_node_lists() {
        assert_eq!(first_host("node12").as_deref(), Some("node12"));
        assert_eq!(first_host("a[1-4],b[2]").as_deref(), Some("a1"));
        assert_eq!(first_host("gpu[07,09-12]").as_deref(), Some("gpu07"));
        assert_eq!(first_host("x1,x2").as_deref(), Some("x1"));
        assert_eq!(first_host(""), None);
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn rendezvous_hands_rank_zeros_bytes_to_everyone() {
        let port = free_port();
        let world = 4;
        let got: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    s.spawn(move || {
                        let l = Launch {
                            rank,
                            world_size: world,
                            local_rank: rank,
                            master_addr: "127.0.0.1".into(),
                            master_port: port,
                            launcher: Launcher::Torchrun,
                        };
                        let id: Vec<u8> = (0..128).map(|i| i as u8 ^ 0x5a).collect();
                        let mine = (rank == 0).then_some(id.as_slice());
                        l.share_from_root(mine, 128, Duration::from_secs(20))
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let want: Vec<u8> = (0..128).map(|i| i as u8 ^ 0x5a).collect();
        assert!(got.iter().all(|g| *g == want));
    }

    #[test]
    fn a_missing_root_times_out_with_the_address() {
        let l = Launch {
            rank: 1,
            world_size: 2,
            local_rank: 1,
            master_addr: "127.0.0.1".into(),
            master_port: free_port(),
            launcher: Launcher::Torchrun,
        };
        let e = l
            .share_from_root(None, 128, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(e.contains("could not reach rank 0 at 127.0.0.1:"), "{e}");
    }
}
