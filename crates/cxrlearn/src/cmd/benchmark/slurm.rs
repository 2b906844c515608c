//! `--emit-slurm FILE`: the grid as one Slurm job array, one task per cell
//! (`--task-index $SLURM_ARRAY_TASK_ID`), resources from `[slurm]`.
//!
//! Pretraining recipes are not a separate job: the first array task that
//! needs a recipe's encoder runs the pretraining under the lock file
//! `DIR/pretrain/<model>.lock` and the model's other tasks wait on that lock,
//! then reuse `DIR/pretrain/<model>/encoder.safetensors`. One script, one
//! `sbatch`, and correct under any scheduling order; the price is that tasks
//! of a pretrained model hold their allocation while they wait. For long
//! recipes, run `cxrlearn benchmark --config ... --out ... --task-index I`
//! for one cell of each pretrained model first (or cap the array with
//! `max_parallel`).
//!
//! Tasks inherit the submitting shell's environment (`--export=ALL`) and the
//! script also exports the libtorch directory the emitting binary loaded
//! (`LD_LIBRARY_PATH`), so a node whose home directory differs still finds
//! libtorch when it sits on a shared path; `setup` lines (`module load ...`)
//! run before the task.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// `[slurm]`: resources of every array task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlurmSettings {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) partition: Option<String>,
    /// `--cpus-per-task` (also the tasks' `OMP_NUM_THREADS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `16G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mem: Option<String>,
    /// `--time`, e.g. `04:00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gpus: Option<u32>,
    /// `--job-name` (default `cxrlearn-benchmark`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job_name: Option<String>,
    /// At most this many tasks at once (`--array=0-N%K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_parallel: Option<usize>,
    /// Further `#SBATCH` options, e.g. `["--qos=normal", "--account=lab"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra: Vec<String>,
    /// Shell lines run before each task, e.g. `["module load cuda"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) setup: Vec<String>,
}

impl SlurmSettings {
    /// Checks values that would otherwise only fail at `sbatch` time.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cpus_per_task == Some(0) {
            bail!("[slurm] cpus_per_task must be at least 1");
        }
        if self.max_parallel == Some(0) {
            bail!("[slurm] max_parallel must be at least 1");
        }
        for (key, v) in [
            ("partition", &self.partition),
            ("mem", &self.mem),
            ("time", &self.time),
            ("job_name", &self.job_name),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '\''))
            {
                bail!("[slurm] {key} = '{v}': empty or contains spaces or quotes");
            }
        }
        for e in &self.extra {
            if !e.starts_with('-') || e.contains('\n') {
                bail!("[slurm] extra: '{e}' is not an sbatch option (like --qos=normal)");
            }
        }
        if self.setup.iter().any(|l| l.contains('\n')) {
            bail!("[slurm] setup: one shell line per entry");
        }
        Ok(())
    }
}

/// What the array script needs besides the resources.
pub(crate) struct Script<'a> {
    /// The cxrlearn binary the tasks run (absolute).
    pub(crate) exe: &'a Path,
    /// The grid file (absolute).
    pub(crate) config: &'a Path,
    /// The benchmark directory (absolute).
    pub(crate) out: &'a Path,
    /// Number of cells, one array task each.
    pub(crate) n_cells: usize,
    /// The libtorch library directory to export, when known.
    pub(crate) libtorch: Option<PathBuf>,
}

/// The sbatch script.
pub(crate) fn script(s: &Script, settings: &SlurmSettings) -> String {
    let logs = s.out.join("slurm");
    let mut array = format!("0-{}", s.n_cells - 1);
    if let Some(k) = settings.max_parallel {
        array.push_str(&format!("%{k}"));
    }
    let mut lines = vec![
        "#!/bin/bash".to_owned(),
        format!(
            "#SBATCH --job-name={}",
            settings.job_name.as_deref().unwrap_or("cxrlearn-benchmark")
        ),
        format!("#SBATCH --array={array}"),
        format!("#SBATCH --output={}/%A_%a.out", logs.display()),
        "#SBATCH --export=ALL".to_owned(),
    ];
    let opt = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("#SBATCH --{name}={v}"));
    lines.extend(opt("partition", &settings.partition));
    lines.extend(
        settings
            .cpus_per_task
            .map(|c| format!("#SBATCH --cpus-per-task={c}")),
    );
    lines.extend(opt("mem", &settings.mem));
    lines.extend(opt("time", &settings.time));
    lines.extend(
        settings
            .gpus
            .filter(|&g| g > 0)
            .map(|g| format!("#SBATCH --gres=gpu:{g}")),
    );
    lines.extend(settings.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines.push(String::new());
    lines.push(format!(
        "# Written by `cxrlearn benchmark --emit-slurm`: one array task per cell of\n\
         # {config} ({n} cells, ordered by dataset, model, strategy, seed).\n\
         # Submit with `sbatch {{this file}}`; a resubmission reruns only unfinished cells.\n\
         # Report (any time): {exe} benchmark report --out {out}\n\
         # Pretraining recipes run inside the first task that needs them, under\n\
         # {out}/pretrain/<model>.lock; the model's other tasks wait for it.",
        config = s.config.display(),
        n = s.n_cells,
        exe = s.exe.display(),
        out = s.out.display(),
    ));
    lines.push("set -eu".to_owned());
    match &s.libtorch {
        Some(dir) => lines.push(format!(
            "export LD_LIBRARY_PATH={}\"${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\"",
            quote(&dir.display().to_string())
        )),
        None => lines.push("# libtorch: found through the binary's rpath".to_owned()),
    }
    lines.push(
        "# One libtorch thread per allocated CPU, not per node core.\n\
         if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export OMP_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi"
            .to_owned(),
    );
    lines.extend(settings.setup.iter().cloned());
    lines.push(format!(
        "exec {} benchmark --config {} --out {} --task-index \"$SLURM_ARRAY_TASK_ID\"",
        quote(&s.exe.display().to_string()),
        quote(&s.config.display().to_string()),
        quote(&s.out.display().to_string()),
    ));
    lines.join("\n") + "\n"
}

/// The directory libtorch was loaded from by this process (Linux: from
/// `/proc/self/maps`), which the tasks should load too.
pub(crate) fn libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libtorch_cpu.so"))
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_owned))
}

/// A single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_array_resources_and_command() {
        let settings = SlurmSettings {
            partition: Some("gpu".into()),
            cpus_per_task: Some(4),
            mem: Some("16G".into()),
            time: Some("02:00:00".into()),
            gpus: Some(1),
            max_parallel: Some(3),
            extra: vec!["--qos=normal".into()],
            setup: vec!["module load cuda".into()],
            ..Default::default()
        };
        let text = script(
            &Script {
                exe: Path::new("/opt/bin/cxrlearn"),
                config: Path::new("/home/u/it's/grid.toml"),
                out: Path::new("/scratch/bench"),
                n_cells: 12,
                libtorch: Some(PathBuf::from("/opt/torch/lib")),
            },
            &settings,
        );
        for line in [
            "#SBATCH --array=0-11%3",
            "#SBATCH --output=/scratch/bench/slurm/%A_%a.out",
            "#SBATCH --partition=gpu",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --time=02:00:00",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --qos=normal",
            "module load cuda",
            "export LD_LIBRARY_PATH='/opt/torch/lib'\"${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"",
            "exec '/opt/bin/cxrlearn' benchmark --config '/home/u/it'\\''s/grid.toml' \
             --out '/scratch/bench' --task-index \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // sbatch stops reading #SBATCH lines at the first command.
        let first_command = text
            .lines()
            .position(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let last_sbatch = lines
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"))
            .unwrap();
        assert!(last_sbatch < first_command);
    }

    #[test]
    fn bad_settings_are_named() {
        let s = SlurmSettings {
            mem: Some("16 G".into()),
            ..Default::default()
        };
        assert!(s.check().unwrap_err().to_string().contains("mem"));
        let s = SlurmSettings {
            extra: vec!["qos=normal".into()],
            ..Default::default()
        };
        assert!(s.check().unwrap_err().to_string().contains("qos=normal"));
    }
}
