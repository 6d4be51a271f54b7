//! Scale study (placeholder until written below).
#[derive(clap::Args, Debug)]
pub struct Args {}
pub fn run(_: &Args) -> Result<(), String> {
    Err("not yet".into())
}
