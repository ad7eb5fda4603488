//! `keel-fake-provider --listen ADDR`: the fake OpenAI/Anthropic provider as
//! a process, for the demo gateway and for tests in other languages.

use clap::Parser;

/// Fake LLM provider speaking the OpenAI and Anthropic wire formats.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Do not keep received requests (`GET /_fake/requests` stays empty);
    /// for benchmarks, where the list would grow without bound.
    #[arg(long)]
    no_record: bool,
    /// Answer as the scripted agent (a two-step shell task) instead of
    /// replaying recordings; `POST /_fake/behavior` can change it.
    #[arg(long)]
    script: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = keel_testkit::FakeProvider::start_with(args.listen, !args.no_record).await?;
    if args.script {
        fake.set_behavior(keel_testkit::Behavior {
            script: true,
            ..Default::default()
        });
    }
    println!("keel-fake-provider ready listen={}", fake.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
