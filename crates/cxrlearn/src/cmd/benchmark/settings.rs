//! A grid's settings tables as subcommand flags (`key = value` ->
//! `--key value`), and their check against the subcommand's own parser
//! before anything runs.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::grid::{RESERVED_PRETRAIN, Recipe, Settings};

/// The `cxrlearn pretrain` arguments of a recipe writing into `out`.
pub(crate) fn pretrain_args(recipe: &Recipe, out: &Path) -> Result<Vec<String>> {
    for key in RESERVED_PRETRAIN {
        if recipe.settings.contains_key(key) {
            bail!("'{key}' is set by the benchmark (the run goes to DIR/pretrain/<model>)");
        }
    }
    let mut args = vec![
        "--method".to_owned(),
        recipe.method.clone(),
        "--data".to_owned(),
        recipe.data.clone(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    args.extend(flags(&recipe.settings)?);
    Ok(args)
}

/// `--key value` flags for a settings table.
pub(crate) fn flags(settings: &Settings) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (key, value) in settings {
        let flag = format!("--{key}");
        match value {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts = items
                    .iter()
                    .map(|v| scalar(key, v))
                    .collect::<Result<Vec<_>>>()?;
                out.extend([flag, parts.join(",")]);
            }
            v => out.extend([flag, scalar(key, v)?]),
        }
    }
    Ok(out)
}

fn scalar(key: &str, v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!(
            "setting '{key}': a {} is not a command-line value (use a string, number, boolean or array of them)",
            other.type_str()
        ),
    })
}

/// Checks a settings table against the subcommand's own parser, so a typo
/// fails now, naming the key, rather than in every cell later.
pub(super) fn validate_table(
    augment: fn(clap::Command) -> clap::Command,
    command: &'static str,
    fixed: &[&str],
    reserved: &[&str],
    settings: &Settings,
) -> Result<()> {
    for key in reserved {
        if settings.contains_key(*key) {
            bail!("[{command}] {key}: set by the benchmark for each cell, not a setting");
        }
    }
    let args = flags(settings).with_context(|| format!("[{command}]"))?;
    validate(augment, command, fixed, &args).with_context(|| format!("[{command}]"))
}

pub(super) fn validate(
    augment: fn(clap::Command) -> clap::Command,
    command: &'static str,
    fixed: &[&str],
    args: &[String],
) -> Result<()> {
    let cmd = augment(clap::Command::new(command)).no_binary_name(true);
    let argv = fixed
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().cloned());
    if let Err(e) = cmd.try_get_matches_from(argv) {
        // clap's first line says what is wrong and names the flag (the
        // setting, in dashes); the usage lines after it would name the
        // benchmark's own flags and only confuse.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        bail!(
            "{} (settings are `cxrlearn {command}` flags: key = value)",
            first.trim_start_matches("error: ")
        );
    }
    Ok(())
}
