//! `cxrlearn methods`: the self-supervised methods, or one method's
//! phantom-scale recipe as `pretrain` flags (what `scripts/ssl-check.sh`
//! trains with, the same the demo and the tests read).

use anyhow::Result;
use cxr_learn::ssl::method::{self, METHODS};
use serde_json::json;

/// Arguments of `cxrlearn methods`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print this method's phantom-scale recipe as `pretrain` flags, one
    /// word per line (for shell arrays).
    #[arg(long, value_name = "METHOD")]
    pub recipe: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<()> {
    if let Some(name) = &args.recipe {
        let m = method::lookup(name)?;
        if args.json {
            println!("{}", serde_json::to_string(&m.recipe_args())?);
        } else {
            for word in m.recipe_args() {
                println!("{word}");
            }
        }
        return Ok(());
    }
    if args.json {
        let list: Vec<_> = METHODS
            .iter()
            .map(|m| {
                json!({
                    "name": m.name, "title": m.title, "about": m.about,
                    "image_text": m.image_text, "recipe": m.recipe_args(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("{:<10} {:<14} {:<11} about", "name", "paper", "learns from");
    for m in METHODS {
        let data = if m.image_text { "image+text" } else { "images" };
        println!("{:<10} {:<14} {:<11} {}", m.name, m.title, data, m.about);
    }
    Ok(())
}
