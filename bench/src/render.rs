//! `report.md`, `latency.svg` and `open-loop.svg`, rendered from `results.json` alone: the
//! markdown from `bench/templates/*.md.j2` (minijinja), the charts with plotters. A run renders
//! what it measured; `nano-bench render <results.json>` renders saved results again.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use minijinja::value::ViaDeserialize;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value as Json;

use crate::openloop::{saturated, RatePoint};
use crate::Shape;

const REPORT: &str = include_str!("../templates/report.md.j2");
const TAX: &str = include_str!("../templates/tax.md.j2");
const WAYS: &str = include_str!("../templates/ways.md.j2");

/// Where the figures of real Spin before the gateway's keep-alive fix are kept.
pub const SPIN_BEFORE: &str = "bench/baselines/spin-before-keepalive-fix.json";

/// Writes `report.md` and the charts beside it, from `results` (what `results.json` holds).
pub fn write(results: &Json, dir: &Path) -> Result<()> {
    std::fs::write(dir.join("report.md"), markdown(results)?)?;
    let figures = Figures::of(results);
    figures.latency_chart(&dir.join("latency.svg"))?;
    figures.open_loop_chart(&dir.join("open-loop.svg"))?;
    Ok(())
}

/// `nano-bench render`: the report of a saved `results.json`, written beside it or in `out`.
pub fn rerender(results: &Path, out: Option<&Path>) -> Result<()> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("cannot read {}", results.display()))?;
    let json: Json = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", results.display()))?;
    let dir = match out {
        Some(o) => o.to_path_buf(),
        None => results.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;
    write(&json, &dir)
}

/// The markdown report.
pub fn markdown(results: &Json) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // Results from an older run may lack a field: it renders as nothing rather than stopping.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("us", us);
    env.add_filter("fixed", |v: f64, digits: usize| format!("{v:.digits$}"));
    env.add_filter("kib", |bytes: f64| format!("{:.0} KiB", bytes / 1024.0));
    env.add_function("ratio", ratio);
    let kept = kept_micro(results);
    let kept_hop_ns = number(&kept, "/hop_ns");
    env.add_function(
        "hop_us",
        move |ViaDeserialize(shape): ViaDeserialize<Json>| hop_us(&shape, kept_hop_ns),
    );
    env.add_function("networked", |shape: &str| {
        Shape::from_str(shape, false).is_ok_and(Shape::networked)
    });
    env.add_test(
        "saturated",
        |ViaDeserialize(p): ViaDeserialize<RatePoint>| saturated(&p),
    );
    env.add_template("report.md.j2", REPORT)?;
    env.add_template("tax.md.j2", TAX)?;
    env.add_template("ways.md.j2", WAYS)?;
    env.add_filter("grouped", |n: u64| grouped(n));
    env.add_filter("basename", |path: &str| {
        Path::new(path)
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    });
    env.add_function(
        "ways_notes",
        |ViaDeserialize(ways): ViaDeserialize<Json>| ways_notes(&ways),
    );
    let boundary_ns = boundary_ns(results);
    // The composed hop the networked ones are compared with: the paired micro-benchmark's
    // median when it is clearly above zero, else the bare component boundary, since a hop cannot
    // be free.
    let composed_hop = match boundary_ns {
        Some(b) if number(&kept, "/hop_ci95_ns/0") <= 0.0 => {
            context! { ns => b, what => "the bare component boundary" }
        }
        _ => context! { ns => kept_hop_ns, what => "the composed hop" },
    };
    let ctx = context! {
        kept => kept,
        boundary_ns => boundary_ns,
        composed_hop => composed_hop,
        spin_before_path => SPIN_BEFORE,
        ..minijinja::Value::from_serialize(results)
    };
    Ok(env.get_template("report.md.j2")?.render(ctx)?)
}

fn number(v: &Json, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Json::as_f64).unwrap_or(0.0)
}

/// The micro-benchmark run with nanohost's setting (`concurrency_support` off); zeros when the
/// phase did not run.
fn kept_micro(results: &Json) -> Json {
    let micro = results["micro"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    micro
        .iter()
        .find(|m| m["concurrency_support"] == false)
        .or(micro.first())
        .cloned()
        .unwrap_or_else(
            || serde_json::json!({"hop_ns": 0.0, "hop_ci95_ns": [0.0, 0.0], "iterations": 0}),
        )
}

/// The bare component boundary: chain N = 1 against N = 0 at 20 B, ns.
fn boundary_ns(results: &Json) -> Option<f64> {
    results["chains"]["hops"]
        .as_array()?
        .iter()
        .find(|h| h["payload_bytes"] == 20)
        .and_then(|h| h["median_ns"].as_f64())
}

/// The hop's median in µs for a shape: measured per message for a networked shape (publish →
/// handler called), the micro-benchmark's for a composed one.
fn hop_us(shape: &Json, kept_hop_ns: f64) -> f64 {
    shape
        .pointer("/hop/to_handler/p50_us")
        .and_then(Json::as_f64)
        .unwrap_or(kept_hop_ns / 1000.0)
}

/// `1234567` as "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The `ways` phase's cells that did not run, each with its reason.
fn ways_notes(ways: &Json) -> Vec<String> {
    let text =
        |v: &Json, pointer: &str| v.pointer(pointer).and_then(Json::as_str).map(str::to_owned);
    let mut notes = Vec::new();
    for way in ways["ways"].as_array().into_iter().flatten() {
        let title = way["title"].as_str().unwrap_or_default();
        for host in way["hosts"].as_array().into_iter().flatten() {
            let name = host["host"].as_str().unwrap_or_default();
            if let Some(why) = text(host, "/skipped") {
                notes.push(format!("- {title}, {name}: {why}"));
            }
            if let Some(why) = text(host, "/per_request/skipped") {
                notes.push(format!("- {title}, {name}, per request: {why}"));
            }
        }
        if let Some(why) = text(way, "/in_process_skipped") {
            notes.push(format!("- {title}, in process: {why}"));
        }
    }
    notes
}

/// µs as reads best: ns under 1 µs, one decimal under 100 µs, ms from 10 ms.
pub(crate) fn us(v: f64) -> String {
    by_size(
        v,
        &[
            (10_000.0, 1.0, 1000.0, 1, " ms"),
            (100.0, 1.0, 1.0, 0, " µs"),
            (1.0, 1.0, 1.0, 1, " µs"),
            (f64::MIN, 1000.0, 1.0, 0, " ns"),
        ],
    )
}

/// A bar label: µs with two or three significant digits.
fn short(v: f64) -> String {
    by_size(
        v,
        &[
            (1000.0, 1.0, 1000.0, 1, "ms"),
            (10.0, 1.0, 1.0, 0, ""),
            (1.0, 1.0, 1.0, 1, ""),
            (f64::MIN, 1.0, 1.0, 2, ""),
        ],
    )
}

/// `v` written by the first rule it reaches, `(from, times, over, decimals, unit)`: `v × times ÷
/// over` with that many decimals, then the unit; by the last rule when it reaches none.
fn by_size(v: f64, rules: &[(f64, f64, f64, usize, &str)]) -> String {
    let rule = rules.iter().find(|r| v >= r.0).or(rules.last());
    let &(_, times, over, decimals, unit) = rule.expect("a rule");
    format!("{:.decimals$}{unit}", v * times / over)
}

/// `a ÷ b` as "1.23x"; "–" when `b` is not positive.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "–".into()
    }
}

/// What the charts draw, read from `results.json`.
struct Figures {
    mode: String,
    concurrency: u64,
    loss_clients: u64,
    /// Per shape: its name, hop median, accept p50 and p99, end to end p50 and p99 (µs), then
    /// orders/s at `concurrency` connections and at `loss_clients` clients.
    shapes: Vec<(String, [f64; 5], [f64; 2])>,
    /// Per shape with an open-loop sweep: each point that has samples.
    open_loop: Vec<(String, Vec<RatePoints>)>,
}

/// Offered rate, p50 and p99 of one open-loop point.
type RatePoints = (f64, f64, f64);

impl Figures {
    fn of(results: &Json) -> Figures {
        let kept_hop_ns = number(&kept_micro(results), "/hop_ns");
        let shapes = results["shapes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let name = |r: &Json| r["shape"].as_str().unwrap_or("?").to_string();
        Figures {
            mode: results["settings"]["mode"].as_str().unwrap_or("?").into(),
            concurrency: results["settings"]["concurrency"].as_u64().unwrap_or(0),
            loss_clients: results["settings"]["loss_clients"].as_u64().unwrap_or(0),
            shapes: shapes
                .iter()
                .map(|r| {
                    let n = |p: &str| number(r, p);
                    let latency = [
                        hop_us(r, kept_hop_ns),
                        n("/accept/p50_us"),
                        n("/accept/p99_us"),
                        n("/end_to_end/latency/p50_us"),
                        n("/end_to_end/latency/p99_us"),
                    ];
                    let rates = [n("/throughput/orders_per_s"), n("/loss/orders_per_s")];
                    (name(r), latency, rates)
                })
                .collect(),
            open_loop: shapes
                .iter()
                .filter_map(|r| {
                    let points = r.pointer("/open_loop/sweep/points")?.as_array()?;
                    let points = points
                        .iter()
                        .filter(|p| p["latency"]["count"].as_u64().unwrap_or(0) > 0)
                        .map(|p| {
                            let n = |q: &str| number(p, q);
                            (n("/offered"), n("/latency/p50_us"), n("/latency/p99_us"))
                        })
                        .collect();
                    Some((name(r), points))
                })
                .collect(),
        }
    }

    /// Latency per shape (log scale) above, orders/s per shape below.
    fn latency_chart(&self, path: &Path) -> Result<()> {
        let groups = [
            "hop median",
            "accept p50",
            "accept p99",
            "end-to-end p50",
            "end-to-end p99",
        ];
        let all = self.shapes.iter().flat_map(|(_, v, _)| v.iter().copied());
        let (lo, hi) = decades(all, (0.01, 10.0));
        let root = SVGBackend::new(path, (1000, 820)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(560);
        let caption = format!(
            "nano-orders: composed vs networked, latency in µs (log scale), {} run",
            self.mode
        );
        let mut chart = chart_on(&top, caption, 20, 40)
            .build_cartesian_2d(0f64..groups.len() as f64, (lo..hi).log_scale())?;
        slot_mesh(&mut chart, &groups, "µs", &|y| format!("{y}"))?;
        let n = self.shapes.len().max(1) as f64;
        let width = 0.8 / n;
        for (k, (shape, v, _)) in self.shapes.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let bars = v.iter().enumerate().filter(|(_, y)| **y > 0.0);
            chart
                .draw_series(bars.clone().map(|(g, y)| {
                    let x0 = g as f64 + 0.1 + k as f64 * width;
                    Rectangle::new([(x0, lo), (x0 + width * 0.9, *y)], color.filled())
                }))?
                .label(shape)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            chart.draw_series(bars.map(|(g, y)| {
                let x = g as f64 + 0.1 + (k as f64 + 0.45) * width;
                Text::new(short(*y), (x, *y * 1.12), bar_label_style())
            }))?;
        }
        legend(&mut chart)?;

        // Throughput, linear.
        let max = self
            .shapes
            .iter()
            .map(|(_, _, [a, b])| a.max(*b))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.2;
        let caption = format!(
            "orders/s: {} connections (dark) and {} clients (light)",
            self.concurrency, self.loss_clients
        );
        let mut chart = chart_on(&bottom, caption, 16, 30)
            .build_cartesian_2d(0f64..self.shapes.len().max(1) as f64, 0f64..max)?;
        let names: Vec<&str> = self.shapes.iter().map(|r| r.0.as_str()).collect();
        slot_mesh(&mut chart, &names, "orders/s", &|y| format!("{y:.0}"))?;
        for (k, (_, _, [a, b])) in self.shapes.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let x = k as f64;
            chart.draw_series([
                Rectangle::new([(x + 0.15, 0.0), (x + 0.48, *a)], color.filled()),
                Rectangle::new([(x + 0.52, 0.0), (x + 0.85, *b)], color.mix(0.45).filled()),
            ])?;
            chart.draw_series([(x + 0.315, *a), (x + 0.685, *b)].map(|(x, y)| {
                Text::new(format!("{y:.0}"), (x, y + max * 0.01), bar_label_style())
            }))?;
        }
        root.present()?;
        Ok(())
    }

    /// p50 and p99 against offered rate, per shape, log-log.
    fn open_loop_chart(&self, path: &Path) -> Result<()> {
        let series = &self.open_loop;
        let xs = series.iter().flat_map(|(_, v)| v.iter().map(|p| p.0));
        let ys = series
            .iter()
            .flat_map(|(_, v)| v.iter().flat_map(|p| [p.1, p.2]));
        let (x0, x1) = xs.fold((f64::MAX, 0f64), |(a, b), x| (a.min(x), b.max(x)));
        let (x0, x1) = if x1 > 0.0 {
            (x0 / 1.3, x1 * 1.3)
        } else {
            (1.0, 10.0)
        };
        let (y0, y1) = decades(ys, (1.0, 10.0));
        let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let caption = format!("open loop: accept latency from intended send time vs offered load ({} run); solid p50, dashed p99", self.mode);
        let mut chart = chart_on(&root, caption, 18, 40)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered orders/s")
            .y_desc("µs")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        for (k, (shape, pts)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))?
                .label(shape)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
            )?;
            chart.draw_series(DashedLineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                6,
                4,
                color.stroke_width(1),
            ))?;
        }
        legend(&mut chart)?;
        root.present()?;
        Ok(())
    }
}

const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

/// A chart on `area`: its caption in `size` points, room for the x labels (`x_label_area`) and
/// the y labels.
fn chart_on<'a, 'b, 'c>(
    area: &'a DrawingArea<SVGBackend<'c>, Shift>,
    caption: String,
    size: u32,
    x_label_area: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'c>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", size))
        .margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(70);
    builder
}

/// The mesh of a chart with a slot per name along x, each named at its middle.
fn slot_mesh<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    names: &[&str],
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| slot_label(names, *x))
        .y_desc(y_desc)
        .y_label_formatter(y_label)
        .draw()?;
    Ok(())
}

/// The series' legend, boxed, upper left.
fn legend<'a, 'b: 'a, CT>(chart: &mut ChartContext<'a, SVGBackend<'b>, CT>) -> Result<()>
where
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    Ok(())
}

/// The powers of ten around the positive `values`, for a log axis; `empty` when there are none.
fn decades(values: impl Iterator<Item = f64>, empty: (f64, f64)) -> (f64, f64) {
    let positive = values.filter(|v| *v > 0.0);
    let (lo, hi) = positive.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > 0.0 {
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf(hi.log10().ceil()),
        )
    } else {
        empty
    }
}

/// The name of slot `i` at its middle, x = i + 0.5; no label elsewhere.
fn slot_label(names: &[&str], x: f64) -> String {
    let i = (x - 0.5).round();
    if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].to_string()
    } else {
        String::new()
    }
}

/// Small black text centred above the point it labels.
fn bar_label_style() -> TextStyle<'static> {
    ("sans-serif", 10)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The results of the committed full run (bench/results/latest).
    fn committed() -> Json {
        serde_json::from_str(include_str!("../results/latest/results.json")).unwrap()
    }

    /// The `ways` section: a cell per way and host, "skipped" or "refused" where one did not
    /// run, and each reason listed once.
    #[test]
    fn the_ways_section_renders_a_cell_per_way_and_host() {
        let host = |name: &str, startup: Option<f64>, skipped: Option<&str>| {
            serde_json::json!({
                "host": name, "version": format!("{name} 1.0"), "command": "", "starts_ms": [],
                "startup_ms": startup, "read_back_status": startup.map(|_| 200),
                "per_request": null, "skipped": skipped,
            })
        };
        let way = |title: &str, hosts: Json, in_process: Json, why: Option<&str>| {
            serde_json::json!({
                "id": title, "title": title, "manifest": "spin.toml", "component": "order-app",
                "inherit_configuration": null,
                "artifact": { "files": [{ "path": "target/x/order-app.wasm", "bytes": 716437 }], "bytes": 716437 },
                "hosts": hosts, "in_process": in_process, "in_process_skipped": why,
            })
        };
        let summary = serde_json::json!({ "p50_us": 1741.0, "p99_us": 10060.0 });
        let in_process = serde_json::json!({
            "link_ms": null, "compiled_component_bytes": 1234567, "compile_ms": 812.0,
            "instances": 10, "instantiate": summary, "first_request": summary,
            "second_request": summary, "core_instances": 23, "memories": 6,
        });
        let mut results = committed();
        results["ways"] = serde_json::json!({
            "settings": { "starts": 7, "warm_up_starts": 1, "start_deadline_s": 120,
                "compilations": 5, "instances": 10, "per_request": { "connections": 16 } },
            "ways": [
                way("wac", serde_json::json!([host("nanohost", Some(12.4), None), host("spin", Some(177.0), None)]), in_process, None),
                way("deny-all", serde_json::json!([host("nanohost", None, Some("refused: deny-all")), host("spin", Some(242.0), None)]), Json::Null, Some("refused: deny-all")),
            ],
        });
        let md = markdown(&results).unwrap();
        for row in [
            "| | wac | deny-all |",
            "| bytes loaded | 716,437 B (order-app.wasm 716,437) | 716,437 B (order-app.wasm 716,437) |",
            "| start-up, nanohost | 12 ms | skipped |",
            "| start-up, spin | 177 ms | 242 ms |",
            "| `GET` of a placed order, spin | 200 | 200 |",
            "| nanohost in process: link at load (median) | none (composed by the build) | refused |",
            "| compile (engine, compilation, pre-instantiation; median) | 812 ms (1,234,567 B compiled) | refused |",
            "| instantiate p50 / p99 | 1741 µs / 10.1 ms | refused |",
            "- deny-all, nanohost: refused: deny-all",
            "- deny-all, in process: refused: deny-all",
            "Hosts: nanohost: nanohost 1.0; spin: spin 1.0.",
        ] {
            assert!(md.contains(row), "no {row:?} in:\n{md}");
        }
    }

    #[test]
    fn the_committed_results_render_every_section() {
        let md = markdown(&committed()).unwrap();
        for heading in [
            "# nano-orders benchmark: composed vs networked (",
            "## Against the targets",
            "## Hosts side by side",
            "### Real Spin before the gateway's keep-alive fix",
            "## Open loop: latency against offered load",
            "### Each hop's added latency at 1000 orders/s, 1024 B orders, beside Dapr",
            "## All shapes",
            "## mqtt",
            "## The composed hop alone (micro-benchmark)",
            "## How cost grows with the number of composed components",
            "## The composition tax: the composed app against the same rules in one component",
            "## How it was measured",
        ] {
            assert!(
                md.contains(&format!("\n{heading}")) || md.starts_with(heading),
                "{heading}"
            );
        }
        assert!(!md.contains("\n\n\n"), "no doubled blank lines");
    }

    #[test]
    fn verdicts_follow_the_figures() {
        let accept =
            "| POST /order answered, composed, embedded store, 1 connection: p50 under 0.5 ms |";
        let tax = "| composition tax: composed within 10% of the monolith's throughput";
        let cases: &[(&str, f64, &str, &str)] = &[
            ("/shapes/0/accept/p50_us", 499.0, accept, "| 499 µs | met |"),
            (
                "/shapes/0/accept/p50_us",
                500.0,
                accept,
                "| 500 µs | **missed** |",
            ),
            (
                "/tax/throughput_ratio",
                0.9,
                tax,
                ": 0.900x (median of 6 paired rounds) | met |",
            ),
            (
                "/tax/throughput_ratio",
                0.724,
                tax,
                ": 0.724x (median of 6 paired rounds) | **missed** |",
            ),
        ];
        for (pointer, value, row, verdict) in cases {
            let mut results = committed();
            *results.pointer_mut(pointer).unwrap() = (*value).into();
            let md = markdown(&results).unwrap();
            let line = md.lines().find(|l| l.starts_with(row));
            assert!(
                line.is_some_and(|l| l.ends_with(verdict)),
                "{pointer} = {value}: {line:?}"
            );
        }
    }

    /// The `tax` phase's CPU figures and the WASIp3 monolith (issue 19): its rows, and the
    /// target's verdict on the reuse-on-both-sides ratio, both ways round. Results without them
    /// (the run of 2026-12-07) still render, without those rows.
    #[test]
    fn the_tax_section_shows_cpu_and_the_wasip3_monolith() {
        let older: Json =
            serde_json::from_str(include_str!("../results/2026-12-07-tax-ways/results.json"))
                .unwrap();
        let md = markdown(&older).unwrap();
        assert!(!md.contains("host CPU per order"), "{md}");
        assert!(!md.contains("WASIp3 monolith"), "{md}");

        let with = |ratio: f64| {
            let mut results = older.clone();
            let tax = &mut results["tax"];
            for (app, cpu_us, cpus) in [
                ("composed", 420.0, 0.95),
                ("monolith", 300.0, 0.97),
                ("p3", 380.0, 0.71),
            ] {
                tax[app]["host_cpu_us_per_order"] = cpu_us.into();
                tax[app]["host_cpus"] = cpus.into();
                tax[app]["client_cpu_us_per_order"] = 60.0.into();
            }
            for (app, drop_us, cycle_us, cpu_us) in [
                ("composed", 21.0, 1300.0, 410.0),
                ("monolith", 4.0, 1200.0, 330.0),
            ] {
                let inproc = &mut tax[app]["in_process"];
                inproc["drop"] = serde_json::json!({ "p50_us": drop_us, "p99_us": drop_us });
                inproc["cycle"] = serde_json::json!({ "p50_us": cycle_us, "p99_us": cycle_us });
                inproc["cycle_cpu"] = serde_json::json!({ "p50_us": cpu_us, "p99_us": cpu_us });
            }
            let mut q = tax["p3"].clone();
            q["wasm"] = "target/wasm32-wasip2/wasm-monolith/bench_monolith_p3.wasm".into();
            q["manifest"] = "bench/fixtures/monolith-p3/spin.toml".into();
            q["orders_per_s"] = 5000.0.into();
            q["host_cpu_us_per_order"] = 350.0.into();
            q["host_cpus"] = 0.74.into();
            q["client_cpu_us_per_order"] = 60.0.into();
            tax["monolith_p3"] = q;
            tax["monolith_p3_reuse"] = tax["p3_reuse"].clone();
            tax["monolith_p3_reuse"]["core_instances"] = 4.into();
            tax["monolith_p3_reuse"]["memories"] = 1.into();
            tax["p3_vs_monolith_p3_ratio"] = ratio.into();
            tax["p3_vs_monolith_p3_ratios"] = serde_json::json!(vec![ratio; 6]);
            markdown(&results).unwrap()
        };
        let target = "| the same with instance reuse on both sides: WASIp3 composed within 10% of the WASIp3 monolith";
        for (ratio, verdict) in [(0.93, "| met |"), (0.85, "| **missed** |")] {
            let md = with(ratio);
            let line = md.lines().find(|l| l.starts_with(target));
            assert!(
                line.is_some_and(|l| l.contains(&format!(": {ratio:.3}x (median of 6 paired rounds; against the WASIp2 monolith, no reuse: 0.776x)"))
                    && l.ends_with(verdict)),
                "{ratio}: {line:?}"
            );
        }
        let md = with(0.93);
        for row in [
            "| host CPU per order in that run (the harness process, all threads) | 420 µs | 300 µs | 1.40x |",
            "| CPUs the host kept busy in that run (CPU time ÷ wall time, of 2) | 0.95 | 0.97 |",
            "| in process: dropping the store (the pool resets its slots), p50 | 21.0 µs | 4.0 µs | 5.25x |",
            "| in process: the same, this process's CPU (every thread), p50 | 410 µs | 330 µs | 1.24x |",
            "#### Reuse on both sides: the WASIp3 build against a WASIp3 monolith",
            "| throughput, 16 connections (orders/s) | 4434 | 5000 | 0.930x (median of the paired rounds' ratios) | 3851 | 5736 |",
            "| host CPU per order in that run | 380 µs | 350 µs | 1.09x | 420 µs | 300 µs |",
            "| CPUs the host kept busy in that run (of 2) | 0.71 | 0.74 |",
            "| core instances / memories per instance | 20 / 6 | 4 / 1 | | 23 / 6 | 3 / 1 |",
        ] {
            assert!(md.contains(row), "no {row:?} in:\n{md}");
        }
        assert!(!md.contains("\n\n\n"), "no doubled blank lines");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(super::us(0.16), "160 ns");
        assert_eq!(super::us(3.4), "3.4 µs");
        assert_eq!(super::us(309.2), "309 µs");
        assert_eq!(super::us(27_300.0), "27.3 ms");
        for (v, label) in [
            (0.123, "0.12"),
            (3.45, "3.5"),
            (309.2, "309"),
            (2_750.0, "2.8ms"),
        ] {
            assert_eq!(super::short(v), label);
        }
    }
}
