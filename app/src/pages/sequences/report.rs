//! The sequence page's "Report" tab: headline figures, the funnel (entered → each step →
//! converted) as bars, how enrolments ended, the time-to-convert distribution as a column chart
//! with the same figures in a table, and each email step's campaign figures.
//!
//! Every figure arrives already disclosure-controlled for the reader (`SequenceReport::build`):
//! "<11" and "hidden" are shown as they are; bars are drawn only for figures shown.

use crate::api_sequences::sequence_report;
use crate::pages::campaigns::email_report;
use domain::disclosure::Figure;
use domain::sequence_report::SequenceReport;
use leptos::prelude::*;
use uuid::Uuid;

fn bar(value: Figure, max: u64) -> impl IntoView {
    value.shown().map(|v| {
        view! {
            <svg class="hbar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
                <rect x="0" y="0" height="10" width=format!("{:.1}", v as f64 * 100.0 / max.max(1) as f64)></rect>
            </svg>
        }
    })
}

fn share(value: Figure, of: Figure) -> String {
    match (value.exact(), of.exact()) {
        (Some(v), Some(d)) if d > 0 => format!("{:.1}%", v as f64 * 100.0 / d as f64),
        _ => "—".into(),
    }
}

fn duration(hours: f64) -> String {
    if hours < 1.0 {
        format!("{:.0} minutes", (hours * 60.0).max(1.0))
    } else if hours < 48.0 {
        format!("{hours:.1} hours")
    } else {
        format!("{:.1} days", hours / 24.0)
    }
}

/// A column chart of the time-to-convert buckets (server-rendered SVG: a title, value labels,
/// bucket labels, a hover value per column); the table beside it carries the same figures.
fn convert_chart(r: &SequenceReport) -> impl IntoView + use<> {
    let max = r.to_convert.iter().filter_map(|b| b.count.shown()).max().unwrap_or(0).max(1) as f64;
    let n = r.to_convert.len().max(1) as f64;
    let (w, h, top, bottom) = (700.0, 220.0, 24.0, 44.0);
    let slot = w / n;
    let plot = h - top - bottom;
    view! {
        <svg class="chart" viewBox=format!("0 0 {w} {h}") role="img" aria-labelledby="convert-chart-title" data-test="convert-chart">
            <title id="convert-chart-title">"Conversions by time from entering the sequence"</title>
            <line class="axis" x1="0" y1=h - bottom x2=w y2=h - bottom></line>
            {r.to_convert.iter().enumerate().map(|(i, b)| {
                let x = slot * i as f64;
                let value = b.count.shown().unwrap_or(0) as f64;
                let bh = value / max * plot;
                let label = b.count.label();
                view! {
                    <g>
                        <rect x=format!("{:.1}", x + slot * 0.15) y=format!("{:.1}", h - bottom - bh) width=format!("{:.1}", slot * 0.7)
                            height=format!("{bh:.1}")>
                            <title>{format!("{}: {}", b.label, label)}</title>
                        </rect>
                        <text class="value" x=format!("{:.1}", x + slot / 2.0) y=format!("{:.1}", h - bottom - bh - 6.0) text-anchor="middle">{label.clone()}</text>
                        <text class="label" x=format!("{:.1}", x + slot / 2.0) y=format!("{:.1}", h - bottom + 18.0) text-anchor="middle">{b.label.clone()}</text>
                    </g>
                }
            }).collect_view()}
            <text class="label" x=w / 2.0 y=h - 4.0 text-anchor="middle">"Time from entering to converting"</text>
        </svg>
    }
}

fn report_view(r: SequenceReport) -> impl IntoView {
    let entered = r.entered;
    let top = entered.shown().unwrap_or(0);
    let hidden = std::iter::once(r.entered)
        .chain([r.active, r.converted])
        .chain(r.funnel.iter().map(|s| s.reached))
        .chain(r.ended.iter().map(|e| e.count))
        .chain(r.to_convert.iter().map(|b| b.count))
        .any(Figure::is_hidden);
    let nobody = entered == Figure::Exact(0);
    let max_end = r.ended.iter().filter_map(|e| e.count.shown()).max().unwrap_or(0);
    let chart = convert_chart(&r);
    let version = match r.version {
        Some(v) => format!("Steps of the live version (v{v})."),
        None => "Not published yet: the steps of the working copy.".into(),
    };
    view! {
        <section class="panel report" data-test="sequence-report">
            <h2>"Report"</h2>
            <dl class="stats">
                <div><dt>"Entered"</dt><dd data-test="report-entered">{r.entered.label()}</dd></div>
                <div><dt>"In it now"</dt><dd data-test="report-active">{r.active.label()}</dd></div>
                <div><dt>"Converted"</dt><dd data-test="report-converted">{r.converted.label()}
                    {r.conversion_rate.map(|p| format!(" · {p:.1}%"))}</dd></div>
                <div><dt>"Median time to convert"</dt><dd data-test="report-median">
                    {r.median_hours_to_convert.map(duration).unwrap_or_else(|| "—".into())}</dd></div>
            </dl>
            {hidden.then(|| view! {
                <p class="hint" data-test="small-cells">"“<11”: fewer than 11 people, hidden for your role. “hidden”: withheld so that a small figure cannot be worked out from the total and the others."</p>
            })}
            {nobody.then(|| view! {
                <p class="empty" data-test="report-empty">"Nobody has entered this sequence yet. The funnel fills in as patients enter."</p>
            })}
            <h3>"Funnel"</h3>
            <p class="hint">{version}</p>
            <div class="table-wrap">
                <table data-test="funnel">
                    <caption class="visually-hidden">"Funnel: people who reached each step"</caption>
                    <thead><tr>
                        <th scope="col">"Step"</th><th scope="col">"Kind"</th><th scope="col">"People"</th>
                        <th scope="col">"Of entered"</th><th scope="col"><span class="visually-hidden">"Chart"</span></th>
                    </tr></thead>
                    <tbody>
                        <tr data-test="funnel-entered">
                            <th scope="row">"Entered the sequence"</th><td></td><td>{entered.label()}</td><td>{share(entered, entered)}</td>
                            <td>{bar(entered, top)}</td>
                        </tr>
                        {r.funnel.iter().map(|s| view! {
                            <tr data-test="funnel-step" data-step=s.step_id.clone()>
                                <th scope="row">{s.name.clone()}</th><td>{s.kind.clone()}</td>
                                <td data-test="reached">{s.reached.label()}</td><td>{share(s.reached, entered)}</td>
                                <td>{bar(s.reached, top)}</td>
                            </tr>
                        }).collect_view()}
                        <tr data-test="funnel-converted">
                            <th scope="row">"Converted"</th><td></td><td>{r.converted.label()}</td><td>{share(r.converted, entered)}</td>
                            <td>{bar(r.converted, top)}</td>
                        </tr>
                    </tbody>
                </table>
            </div>
            <h3>"How enrolments ended"</h3>
            <div class="table-wrap">
                <table data-test="ended">
                    <caption class="visually-hidden">"Enrolments by how they ended"</caption>
                    <thead><tr><th scope="col">"Outcome"</th><th scope="col">"People"</th><th scope="col"><span class="visually-hidden">"Chart"</span></th></tr></thead>
                    <tbody>
                        <tr><th scope="row">"Still in the sequence"</th><td>{r.active.label()}</td><td>{bar(r.active, max_end.max(r.active.shown().unwrap_or(0)))}</td></tr>
                        {r.ended.iter().map(|e| view! {
                            <tr data-test="ended-row" data-reason=e.reason.as_str()>
                                <th scope="row">{e.reason.label()}</th><td>{e.count.label()}</td>
                                <td>{bar(e.count, max_end.max(r.active.shown().unwrap_or(0)))}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <h3>"Time to convert"</h3>
            <div class="chart-with-table">
                {chart}
                <table data-test="to-convert">
                    <caption class="visually-hidden">"Conversions by time from entering"</caption>
                    <thead><tr><th scope="col">"Converted within"</th><th scope="col">"People"</th></tr></thead>
                    <tbody>
                        {r.to_convert.iter().map(|b| view! {
                            <tr><th scope="row">{b.label.clone()}</th><td>{b.count.label()}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <h3>"Emails"</h3>
            {r.emails.is_empty().then(|| view! { <p class="empty">"This sequence sends no email."</p> })}
            {r.emails.into_iter().map(|e| view! {
                <section class="email-step" data-test="email-step" data-step=e.step_id.clone()>
                    <h4>{e.name.clone()}</h4>
                    {email_report(e.report)}
                </section>
            }).collect_view()}
        </section>
    }
}

/// The report tab; loads when opened (browser only, like the rest of the page).
#[component]
pub fn SequenceReportPanel(id: Uuid) -> impl IntoView {
    let load = Action::new(move |_: &()| sequence_report(id));
    Effect::new(move || {
        load.dispatch(());
    });
    view! {
        {move || match load.value().get() {
            None => view! { <section class="panel"><p>"Loading…"</p></section> }.into_any(),
            Some(Err(e)) => view! { <section class="panel"><p class="alert error" role="alert">{e.message}</p></section> }.into_any(),
            Some(Ok(r)) => report_view(r).into_any(),
        }}
    }
}
