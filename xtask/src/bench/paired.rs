//! Ratios measured in alternating rounds: after a pass's scenarios, each pair whose ratio the
//! goals name (B to A, D to its plain twin) is measured again by turns on the same processes,
//! a short wrk run of one then of the other, the order swapped every round. The scenarios'
//! own runs are half a minute or more apart, and a shared machine's speed drifts by a third in
//! that time; by turns, both sides of each round see the same machine, so the rounds' ratios (their
//! median and range) say what the hop costs rather than how the machine changed.

use anyhow::{Context, Result, bail};

use super::Env;
use super::measure::Endpoints;
use super::results::{Paired, ScenarioResult};
use super::scenarios::Scenario;

/// The pairs, as (numerator, denominator): the discounted scenario over its plain one.
const PAIRS: [(&str, &str); 2] = [("B", "A"), ("D", "D-plain")];

/// Each of [`PAIRS`] whose two scenarios are in `scenarios` and measured without failure in
/// `results`, in `--pair-rounds` rounds at the pair concurrency ([`super::BenchArgs`]), on the
/// Catalog `at` says serves each.
pub(super) fn measure(
    env: &Env<'_>,
    scenarios: &[Scenario],
    results: &[ScenarioResult],
    at: impl Fn(&Scenario) -> Option<Endpoints>,
) -> Result<Vec<Paired>> {
    let (args, mut measured) = (env.args, Vec::new());
    let Some(connections) = args.pair_connections() else {
        return Ok(measured);
    };
    let ran = |key| {
        let ok = results.iter().any(|r| r.key == key && r.failure.is_none());
        let scenario = scenarios.iter().find(|s| s.key == key).filter(|_| ok)?;
        Some((scenario, at(scenario)?))
    };
    for (numerator, denominator) in PAIRS {
        let (Some(num), Some(den)) = (ran(numerator), ran(denominator)) else {
            continue;
        };
        let round_secs = args.pair_round_secs();
        println!(
            "\n{numerator}/{denominator}: {} rounds by turns, {round_secs} s each at \
             {connections} connections",
            args.pair_rounds
        );
        let mut paired = Paired::new(numerator, denominator, connections, round_secs);
        let done = rounds(env, [num, den], &mut paired);
        // Rounds that stopped short still have their median.
        paired.median = paired.median_ratio();
        if let Err(err) = done {
            if env.stop.requested() {
                return Err(err);
            }
            eprintln!("warning: {numerator}/{denominator} by turns failed: {err:#}");
            paired.failure = Some(format!("{err:#}"));
        }
        measured.push(paired);
    }
    Ok(measured)
}

/// The rounds of one pair, appended to `paired`: `[numerator, denominator]`, each with the
/// Catalog that serves it.
fn rounds(env: &Env<'_>, pair: [(&Scenario, Endpoints); 2], paired: &mut Paired) -> Result<()> {
    let (wrk, connections, secs) = (env.wrk, paired.connections, paired.round_secs);
    let [num_script, den_script] = pair.map(|(s, _)| wrk.script(s.key, s.requests));
    let scripts = [num_script?, den_script?];
    let url = |side: usize| format!("http://{}{}", pair[side].1.catalog, pair[side].0.path);
    // Each side's Catalog may have sat idle through other scenarios: one unrecorded run each
    // first, so that round 0 does not measure a cold start on one side only.
    for side in [1, 0] {
        let warm = wrk.run(&scripts[side], &url(side), connections, secs);
        warm.with_context(|| format!("warm-up, {}", pair[side].0.key))?;
    }
    for round in 0..env.args.pair_rounds {
        let mut rps = [0.0; 2];
        // Denominator first in even rounds, numerator first in odd ones: across rounds, a
        // steady drift favours neither side.
        let order = if round % 2 == 0 { [1, 0] } else { [0, 1] };
        for side in order {
            let stats = wrk.run(&scripts[side], &url(side), connections, secs);
            let key = pair[side].0.key;
            let stats = stats.with_context(|| format!("round {round}, {key}"))?;
            rps[side] = stats.requests_per_sec();
            paired.errors += stats.total_errors();
            if env.stop.requested() {
                bail!("interrupted");
            }
        }
        let ratio = rps[0] / rps[1];
        println!(
            "  round {round}: {:.0} / {:.0} requests/s = {ratio:.3}",
            rps[0], rps[1]
        );
        paired.rounds.push(rps);
    }
    Ok(())
}
