//! The Reports area: for a date range in the organisation's time zone, the headline figures
//! against the previous period, the deliveries / opens / clicks time series (a server-rendered
//! SVG chart with the same figures in a table beside it), and the sortable comparison of every
//! campaign and sequence email. Each table and the chart export as files (CSV, SVG).
//!
//! Every figure arrives disclosure-controlled for the reader (`domain::reports`): "<11" and
//! "hidden" are shown as they are, and rates or changes built on them are "–".

use crate::api_reports::{
    report_comparison, report_context, report_curves, report_drill, report_home, report_overview, set_report_time_zone,
};
use crate::components::{ErrorMessage, FieldError, Guard, use_hydrated};
use crate::error::AppError;
use domain::Permission;
use domain::breakdowns::{Breakdown, BreakdownRow, Dimension};
use domain::disclosure::Figure;
use domain::reports::{
    Bucket, COMPARISON_COLUMNS, Comparison, Curves, Deliverability, Drill, Metric, Overview, ReportRange, ReportSetup,
    SourceRef, Value, WEEKDAYS, change_label,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

fn export_href(file: &str, r: &ReportRange) -> String {
    format!("/reports/export/{file}?from={}&to={}", r.from, r.to)
}

fn any_hidden(o: &Overview) -> bool {
    o.figures.iter().any(|f| matches!(f.current, Value::Count(c) if c.is_hidden()))
        || o.series.iter().any(|p| p.delivered.is_hidden() || p.human_openers.is_hidden() || p.human_clicks.is_hidden())
}

/// The headline figures with their change against the previous period.
fn headline(o: &Overview, metrics: &[Metric]) -> impl IntoView + use<> {
    let items = metrics
        .iter()
        .filter_map(|m| o.figure(*m).cloned())
        .map(|f| {
            let direction = match f.change {
                Some(c) if c.abs() > 1e-9 => {
                    if (c > 0.0) == f.metric.higher_is_better() {
                        "good"
                    } else {
                        "bad"
                    }
                }
                _ => "flat",
            };
            view! {
                <div data-test="figure" data-metric=format!("{:?}", f.metric).to_lowercase()>
                    <dt title=f.metric.hint()>{f.metric.label()}</dt>
                    <dd data-test="figure-value">{f.current.label()}</dd>
                    <small class=format!("change {direction}") data-test="figure-change">
                        {change_label(f.metric, f.change)}
                        <span class="muted">{format!(" · before: {}", f.previous.label())}</span>
                    </small>
                </div>
            }
        })
        .collect_view();
    view! { <dl class="stats report-figures" data-test="headline">{items}</dl> }
}

fn bucket_text(b: Bucket, t: chrono::NaiveDateTime) -> String {
    match b {
        Bucket::Hour => t.format("%a %b %-d %H:%M").to_string(),
        Bucket::Day => t.format("%a %b %-d").to_string(),
    }
}

/// Where the overview's exports are: (CSV, SVG).
fn overview_exports(r: &ReportRange) -> (String, String) {
    (export_href("overview.csv", r), export_href("overview.svg", r))
}

fn overview_view(o: Overview, exports: (String, String), org_level: bool) -> impl IntoView {
    let hidden = any_hidden(&o);
    let nothing =
        o.figure(Metric::Sent).is_some_and(|f| f.current == Value::Count(domain::disclosure::Figure::Exact(0)))
            && o.figure(Metric::HumanOpeners)
                .is_some_and(|f| f.current == Value::Count(domain::disclosure::Figure::Exact(0)));
    let bucket = o.bucket;
    let svg = o.chart_svg.clone();
    let (csv_href, svg_href) = exports;
    let dl = o.deliverability.clone();
    let rows = o
        .series
        .iter()
        .map(|p| {
            view! {
                <tr data-test="series-row">
                    <th scope="row">{bucket_text(bucket, p.start)}</th>
                    <td data-test="series-delivered">{p.delivered.label()}</td>
                    <td data-test="series-opened">{p.human_openers.label()}</td>
                    <td data-test="series-clicks">{p.human_clicks.label()}</td>
                </tr>
            }
        })
        .collect_view();
    let previous =
        format!("Compared with {} – {}.", o.previous.from.format("%b %-d, %Y"), o.previous.to.format("%b %-d, %Y"));
    view! {
        <section class="panel" data-test="overview">
            <div class="panel-head">
                <h2>"Overview"</h2>
                <span class="muted">{previous}</span>
            </div>
            {o.catching_up.then(|| view! {
                <p class="hint" data-test="catching-up">"The newest events are still being counted: figures catch up within a minute."</p>
            })}
            {nothing.then(|| view! {
                <p class="empty" data-test="overview-empty">"No email was sent, opened or clicked in this range. Pick a longer range, or send a campaign first."</p>
            })}
            {headline(&o, &Metric::ALL)}
            {hidden.then(|| view! {
                <p class="hint" data-test="small-cells">"“<11”: from fewer than 11 messages, hidden for your role. “hidden”: withheld so that a small figure cannot be worked out from a total and the others. Rates built on them show “–”."</p>
            })}
        </section>
        <section class="panel" data-test="over-time">
            <div class="panel-head">
                <h2>{format!("Over time, by {}", if bucket == Bucket::Hour { "hour" } else { "day" })}</h2>
                <span class="exports">
                    <a href=csv_href download data-test="export-overview-csv">"Download CSV"</a>
                    " · "
                    <a href=svg_href download data-test="export-overview-svg">"Download chart (SVG)"</a>
                    " · "
                    <PngLink box_test="overview-chart-box"/>
                </span>
            </div>
            <div class="chart-stack">
                <div class="chart-box" data-test="overview-chart-box" inner_html=svg></div>
                <div class="table-wrap scroll">
                    <table data-test="series-table">
                        <caption class="visually-hidden">"Deliveries, messages opened by people and clicks by people per bucket"</caption>
                        <thead><tr>
                            <th scope="col">{if bucket == Bucket::Hour { "Hour" } else { "Day" }}</th>
                            <th scope="col">"Delivered"</th>
                            <th scope="col">"Opened (people)"</th>
                            <th scope="col">"Clicks (people)"</th>
                        </tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            </div>
        </section>
        {deliverability_view(&dl, org_level)}
    }
}

fn figure_bar(value: Figure, max: u64) -> impl IntoView {
    value.shown().map(|v| {
        view! {
            <svg class="hbar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
                <rect x="0" y="0" height="10" width=format!("{:.1}", v as f64 * 100.0 / max.max(1) as f64)></rect>
            </svg>
        }
    })
}

/// Bounces by class, deferrals and (for the organisation) suppression-list growth.
fn deliverability_view(d: &Deliverability, org_level: bool) -> impl IntoView + use<> {
    let bounces = d.bounces();
    let max = bounces.iter().filter_map(|(_, f)| f.shown()).max().unwrap_or(0);
    let suppressions = d.suppressions();
    let smax = suppressions.iter().filter_map(|(_, f)| f.shown()).max().unwrap_or(0);
    let deferrals = d.deferrals;
    view! {
        <section class="panel" data-test="deliverability">
            <h2>"Deliverability"</h2>
            <div class="two-columns">
                <div class="table-wrap">
                    <table data-test="bounces-table">
                        <caption>"Messages not delivered, by reason"</caption>
                        <thead><tr><th scope="col">"Reason"</th><th scope="col">"Messages"</th>
                            <th scope="col"><span class="visually-hidden">"Chart"</span></th></tr></thead>
                        <tbody>
                            {bounces.into_iter().map(|(label, f)| view! {
                                <tr data-test="bounce-row"><th scope="row">{label}</th><td>{f.label()}</td><td>{figure_bar(f, max)}</td></tr>
                            }).collect_view()}
                            <tr data-test="deferrals-row"><th scope="row">"Deferred and retried later (times)"</th>
                                <td>{deferrals.label()}</td><td></td></tr>
                        </tbody>
                    </table>
                </div>
                {org_level.then(|| view! {
                    <div class="table-wrap">
                        <table data-test="suppressions-table">
                            <caption>"Added to the suppression list"</caption>
                            <thead><tr><th scope="col">"Why"</th><th scope="col">"Addresses"</th>
                                <th scope="col"><span class="visually-hidden">"Chart"</span></th></tr></thead>
                            <tbody>
                                {suppressions.into_iter().map(|(label, f)| view! {
                                    <tr data-test="suppression-row"><th scope="row">{label}</th><td>{f.label()}</td><td>{figure_bar(f, smax)}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                })}
            </div>
            {d.by_provider.as_ref().map(breakdown_view)}
            {d.by_tls.as_ref().map(breakdown_view)}
            <p class="hint">"Every message is sent over TLS 1.2 or 1.3: a server that cannot encrypt is refused. The version is the one the accepting server negotiated; messages sent before versions were kept show as not recorded."</p>
        </section>
    }
}

/// A breakdown as a table with a bar per row (the figure the dimension is about), or nothing
/// when it has no rows.
fn breakdown_view(b: &Breakdown) -> impl IntoView + use<> {
    let dim = b.dimension;
    let slug = match dim {
        Dimension::Provider => "provider",
        Dimension::Client => "client",
        Dimension::Tls => "tls",
        Dimension::Segment => "segment",
        Dimension::List => "list",
    };
    // The column the bars draw: opens for clients, deliveries otherwise.
    let bar_of = move |r: &BreakdownRow| if dim == Dimension::Client { r.openers } else { r.delivered };
    let max = b.rows.iter().filter_map(|r| bar_of(r).shown()).max().unwrap_or(0);
    let hint = match dim {
        Dimension::Provider => {
            "By the recipient's address: Gmail, Microsoft, Yahoo and Apple consumer domains; a company's own domain counts as other."
        }
        Dimension::Client => {
            "The email program that loaded the images of a person's first open (privacy proxies count as their mail app)."
        }
        Dimension::Tls => "Delivered messages by the TLS version of the connection they were handed over on.",
        Dimension::Segment | Dimension::List => {
            "Each patient counts under the first segment or list of the audience they were found in. Segments and lists sent to fewer than 11 people are not listed."
        }
    };
    let rows = b.rows.clone();
    view! {
        <div class="table-wrap breakdown" data-test=format!("breakdown-{slug}")>
            <table>
                <caption>{dim.title()}</caption>
                <thead><tr>
                    <th scope="col">{dim.heading()}</th>
                    {match dim {
                        Dimension::Client => view! {
                            <th scope="col">"Opened (people)"</th><th scope="col">"Opens by people"</th>
                        }.into_any(),
                        Dimension::Tls => view! {
                            <th scope="col">"Delivered"</th><th scope="col">"Share"</th>
                        }.into_any(),
                        _ => view! {
                            <th scope="col">"Delivered"</th><th scope="col">"Bounced"</th><th scope="col">"Opened (people)"</th>
                            <th scope="col">"Open rate"</th><th scope="col">"Clicked (people)"</th><th scope="col">"Click rate"</th>
                            <th scope="col">"Unsubscribed"</th>
                        }.into_any(),
                    }}
                    <th scope="col"><span class="visually-hidden">"Chart"</span></th>
                </tr></thead>
                <tbody>
                    {rows.into_iter().map(|r| {
                        let bar = figure_bar(bar_of(&r), max);
                        view! {
                            <tr data-test="breakdown-row">
                                <th scope="row">{r.label.clone()}</th>
                                {match dim {
                                    Dimension::Client => view! {
                                        <td>{r.openers.label()}</td><td>{r.opens.label()}</td>
                                    }.into_any(),
                                    Dimension::Tls => view! {
                                        <td>{r.delivered.label()}</td><td>{share_label(r.share)}</td>
                                    }.into_any(),
                                    _ => view! {
                                        <td>{r.delivered.label()}</td><td>{r.bounced.label()}</td><td>{r.openers.label()}</td>
                                        <td>{share_label(r.open_rate)}</td><td>{r.clickers.label()}</td>
                                        <td>{share_label(r.click_rate)}</td><td>{r.unsubscribes.label()}</td>
                                    }.into_any(),
                                }}
                                <td>{bar}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <p class="hint">{hint}</p>
        </div>
    }
}

fn comparison_view(c: Comparison) -> impl IntoView {
    // Sort by a column (None: by name); descending first, as analysts look for the largest.
    let sort = RwSignal::new((None::<Metric>, true));
    let range = c.range;
    let empty = c.rows.is_empty();
    let rows = StoredValue::new(c.rows.clone());
    let total = c.total;
    let picked = RwSignal::new(Vec::<SourceRef>::new());
    let curves = Action::new(|s: &Vec<SourceRef>| report_curves(s.clone()));
    let header = move |m: Option<Metric>, label: &'static str| {
        let state = move || {
            let (k, desc) = sort.get();
            if k == m { if desc { "descending" } else { "ascending" } } else { "none" }
        };
        view! {
            <th scope="col" aria-sort=state>
                <button type="button" class="sort" data-test="sort" data-column=label
                    on:click=move |_| sort.update(|(k, d)| { if *k == m { *d = !*d } else { *k = m; *d = m.is_some() } })>
                    {label}
                </button>
            </th>
        }
    };
    let body = move || {
        let (k, desc) = sort.get();
        let mut list = rows.get_value();
        list.sort_by(|a, b| {
            let ord = match k {
                None => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                Some(m) => {
                    let (x, y) = (a.figures.value(m).number(), b.figures.value(m).number());
                    // Hidden figures sort below every shown one, in either direction.
                    match (x, y) {
                        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        (Some(_), None) => return std::cmp::Ordering::Less,
                        (None, Some(_)) => return std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    }
                }
            };
            if desc { ord.reverse() } else { ord }
        });
        list.into_iter()
            .map(|r| {
                let name = match r.href.clone() {
                    Some(h) => view! { <a href=h>{r.name.clone()}</a> }.into_any(),
                    None => view! { <span>{r.name.clone()}</span> }.into_any(),
                };
                let me = SourceRef { kind: r.kind, id: r.id, step_id: r.step_id.clone().unwrap_or_default() };
                let me2 = me.clone();
                let checked = move || picked.with(|p| p.contains(&me2));
                let label = format!("Compare {}", r.name);
                view! {
                    <tr data-test="comparison-row" data-kind=format!("{:?}", r.kind).to_lowercase()>
                        <td><input type="checkbox" data-test="pick" aria-label=label prop:checked=checked
                            on:change=move |_| picked.update(|p| {
                                if let Some(i) = p.iter().position(|x| *x == me) { p.remove(i); } else if p.len() < 8 { p.push(me.clone()); }
                            })/></td>
                        <th scope="row">{name}<br/><small class="muted">{r.kind.label()}</small></th>
                        {COMPARISON_COLUMNS.iter().map(|m| view! { <td>{r.figures.value(*m).label()}</td> }).collect_view()}
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <section class="panel" data-test="comparison">
            <div class="panel-head">
                <h2>"Campaigns and sequence emails"</h2>
                <a href=export_href("comparison.csv", &range) download data-test="export-comparison-csv">"Download CSV"</a>
            </div>
            {if empty {
                view! { <p class="empty" data-test="comparison-empty">"Nothing was sent or opened in this range."</p> }.into_any()
            } else {
                view! {
                    <p class="hint">"Select a column heading to sort by it."</p>
                    <div class="table-wrap">
                        <table data-test="comparison-table">
                            <caption class="visually-hidden">"Figures of each campaign and sequence email in the range"</caption>
                            <thead><tr>
                                <th scope="col"><span class="visually-hidden">"Compare"</span></th>
                                {header(None, "Name")}
                                {COMPARISON_COLUMNS.iter().map(|m| header(Some(*m), m.label())).collect_view()}
                            </tr></thead>
                            <tbody>{body}</tbody>
                            <tfoot><tr data-test="comparison-total">
                                <td></td>
                                <th scope="row">"All email"</th>
                                {COMPARISON_COLUMNS.iter().map(|m| view! { <td>{total.value(*m).label()}</td> }).collect_view()}
                            </tr></tfoot>
                        </table>
                    </div>
                    <div class="actions">
                        <button type="button" data-test="compare-curves"
                            disabled=move || picked.with(|p| p.len() < 2) || curves.pending().get()
                            on:click=move |_| { curves.dispatch(picked.get_untracked()); }>
                            "Compare opens since the send"
                        </button>
                        <span class="hint">"Tick two to eight rows."</span>
                    </div>
                    {move || curves.value().get().map(|r| match r {
                        Ok(c) => curves_view(c).into_any(),
                        Err(e) => view! { <p class="alert error" role="alert">{e.message}</p> }.into_any(),
                    })}
                }.into_any()
            }}
        </section>
    }
}

fn share_label(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "–".into())
}

/// Overlaid opens-since-send curves with the same shares as a table.
fn curves_view(c: Curves) -> impl IntoView {
    let svg = c.chart_svg.clone();
    let labels = c.labels.clone();
    view! {
        <div class="chart-stack" data-test="curves">
            <div class="chart-box" data-test="curves-chart-box" inner_html=svg></div>
            <div class="table-wrap">
                <table data-test="curves-table">
                    <caption class="visually-hidden">"Share of delivered messages opened by people, by time since the send"</caption>
                    <thead><tr>
                        <th scope="col">"Campaign or email"</th>
                        {labels.iter().map(|l| view! { <th scope="col">{l.clone()}</th> }).collect_view()}
                    </tr></thead>
                    <tbody>
                        {c.lines.iter().map(|(name, values)| view! {
                            <tr data-test="curves-row">
                                <th scope="row">{name.clone()}</th>
                                {values.iter().map(|v| view! { <td>{share_label(*v)}</td> }).collect_view()}
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </div>
    }
}

/// Saves the chart in the box `box_test` as a PNG, drawn by the browser from the SVG (the server
/// keeps no fonts and rasterises nothing).
#[component]
fn PngLink(box_test: &'static str) -> impl IntoView {
    let save = move |_| {
        #[cfg(feature = "hydrate")]
        crate::png::save_chart(box_test);
        #[cfg(not(feature = "hydrate"))]
        let _ = box_test;
    };
    view! {
        <button type="button" class="link" data-test=format!("export-{box_test}-png") on:click=save>"Download chart (PNG)"</button>
    }
}

/// The admin's report time zone form.
#[component]
fn TimeZoneForm(current: String) -> impl IntoView {
    let zone = RwSignal::new(current);
    let error = RwSignal::new(None::<AppError>);
    let saved = RwSignal::new(false);
    let save = Action::new(|z: &String| set_report_time_zone(z.clone()));
    Effect::new(move || match save.value().get() {
        Some(Ok(())) => {
            error.set(None);
            saved.set(true);
        }
        Some(Err(e)) => {
            saved.set(false);
            error.set(Some(e));
        }
        None => {}
    });
    view! {
        <section class="panel" data-test="report-time-zone">
            <h2>"Report time zone"</h2>
            <form class="inline-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                save.dispatch(zone.get_untracked());
            }>
                <label>"Days and hours are counted in"
                    <input type="text" list="report-zones" data-test="time-zone-input" prop:value=move || zone.get()
                        on:input=move |ev| zone.set(event_target_value(&ev)) autocomplete="off"/>
                </label>
                <datalist id="report-zones">
                    {domain::time_zones::TIME_ZONES.iter().map(|z| view! { <option value=*z></option> }).collect_view()}
                </datalist>
                <FieldError error=error field="time_zone" label="The time zone"/>
                <button type="submit" disabled=move || save.pending().get() data-test="time-zone-save">"Save"</button>
            </form>
            {move || saved.get().then(|| view! {
                <p class="alert ok" role="status" data-test="time-zone-saved">"Saved. Reports are being recounted in the new time zone; this takes a minute."</p>
            })}
        </section>
    }
}

#[component]
pub fn ReportsPage() -> impl IntoView {
    view! {
        <Title text="Reports · Hermetic"/>
        <Guard permission=Permission::ReportsRead>
            <Reports/>
        </Guard>
    }
}

#[component]
fn Reports() -> impl IntoView {
    let hydrated = use_hydrated();
    let ctx = Action::new(|_: &()| report_context());
    Effect::new(move || {
        ctx.dispatch(());
    });
    move || {
        match ctx.value().get() {
        None => view! { <section class="panel"><h1>"Reports"</h1><p>"Loading…"</p></section> }.into_any(),
        Some(Err(e)) => view! {
            <section class="panel"><h1>"Reports"</h1><ErrorMessage error=Signal::derive(move || Some(e.clone()))/></section>
        }
        .into_any(),
        Some(Ok(c)) => view! { <ReportArea ctx=c hydrated=hydrated/> }.into_any(),
    }
    }
}

/// Loading a report for a range (from, to).
type RangeLoad<T> = Action<(String, String), Result<T, AppError>>;

/// The range being looked at: the picker's fields, and what to do when it changes.
#[derive(Clone, Copy)]
struct RangeState {
    from: RwSignal<String>,
    to: RwSignal<String>,
    preset: RwSignal<String>,
    error: RwSignal<Option<AppError>>,
}

impl RangeState {
    /// What a report page loads for this range: `fetch(from, to)` once mounted with `initial`,
    /// again on each "Show"; a refusal goes next to the range fields. Returns the loading action
    /// and the picker's apply callback.
    fn loader<T, F, Fut>(self, initial: ReportRange, fetch: F) -> (RangeLoad<T>, Callback<()>)
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(String, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, AppError>> + Send + 'static,
    {
        let load = Action::new(move |(f, t): &(String, String)| fetch(f.clone(), t.clone()));
        let apply = Callback::new(move |()| {
            self.error.set(None);
            load.dispatch((self.from.get_untracked(), self.to.get_untracked()));
        });
        Effect::new(move || {
            load.dispatch((initial.from.to_string(), initial.to.to_string()));
        });
        Effect::new(move || {
            if let Some(Err(e)) = load.value().get() {
                self.error.set(Some(e));
            }
        });
        (load, apply)
    }

    fn new(initial: ReportRange, preset: &str) -> RangeState {
        RangeState {
            from: RwSignal::new(initial.from.to_string()),
            to: RwSignal::new(initial.to.to_string()),
            preset: RwSignal::new(preset.to_string()),
            error: RwSignal::new(None),
        }
    }
}

/// The date range picker (presets, or two dates), with a refused range said next to it.
#[component]
fn RangePicker(
    state: RangeState,
    today: chrono::NaiveDate,
    #[prop(into)] busy: Signal<bool>,
    hydrated: ReadSignal<bool>,
    apply: Callback<()>,
) -> impl IntoView {
    let RangeState { from, to, preset, error } = state;
    let on_preset = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        preset.set(v.clone());
        if let Ok(days) = v.parse::<i64>() {
            let r = ReportRange::last_days(today, days);
            from.set(r.from.to_string());
            to.set(r.to.to_string());
            apply.run(());
        }
    };
    view! {
        <form class="range-picker" data-test="range-picker" on:submit=move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            preset.set("custom".into());
            apply.run(());
        }>
            <label>"Range"
                <select data-test="range-preset" data-filter="" prop:value=move || preset.get() on:change=on_preset>
                    <option value="1">"Today"</option>
                    <option value="2">"Yesterday and today"</option>
                    <option value="7">"Last 7 days"</option>
                    <option value="30">"Last 30 days"</option>
                    <option value="90">"Last 90 days"</option>
                    <option value="365">"Last 12 months"</option>
                    <option value="custom">"Custom"</option>
                </select>
            </label>
            <label>"From"
                <input type="date" data-test="range-from" data-filter="" prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev))/>
            </label>
            <label>"To"
                <input type="date" data-test="range-to" data-filter="" prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev))/>
            </label>
            <button type="submit" data-test="range-apply" disabled=move || !hydrated.get() || busy.get()>"Show"</button>
            <FieldError error=error field="range" label="The date range"/>
        </form>
        {move || busy.get().then(|| view! { <p class="hint" role="status" data-test="report-loading">"Counting…"</p> })}
        <ErrorMessage error=Signal::derive(move || error.get().filter(|e| !e.is_about_any(&["range"])))/>
    }
}

#[component]
fn ReportArea(ctx: ReportSetup, hydrated: ReadSignal<bool>) -> impl IntoView {
    let initial = ReportRange::last_days(ctx.today, 30);
    let range = RangeState::new(initial, "30");
    let (load, apply) = range.loader(initial, |f, t| async move {
        let o = report_overview(f.clone(), t.clone()).await?;
        let c = report_comparison(f, t).await?;
        Ok::<_, AppError>((o, c))
    });
    let tz = ctx.time_zone.clone();
    view! {
        <section class="panel">
            <div class="panel-head">
                <h1>"Reports"</h1>
                <span class="muted" data-test="report-zone">{format!("All email · days and hours in {tz}")}</span>
            </div>
            <p class="hint">"Figures for every campaign, sequence email and API message: never a patient's details."</p>
            <RangePicker state=range today=ctx.today busy=load.pending() hydrated=hydrated apply=apply/>
        </section>
        {move || match load.value().get() {
            Some(Ok((o, c))) => {
                let exports = overview_exports(&o.range);
                view! { {overview_view(o, exports, true)} {comparison_view(c)} }.into_any()
            }
            _ => ().into_any(),
        }}
        {ctx.may_change_time_zone.then(|| view! { <TimeZoneForm current=ctx.time_zone.clone()/> })}
    }
}

/// One campaign's or sequence email's report: `/reports/source?kind=&id=&step=&from=&to=`.
#[component]
pub fn ReportSourcePage() -> impl IntoView {
    view! {
        <Title text="Report · Hermetic"/>
        <Guard permission=Permission::ReportsRead>
            <SourceReport/>
        </Guard>
    }
}

#[component]
fn SourceReport() -> impl IntoView {
    let hydrated = use_hydrated();
    let query = use_query_map();
    let q = move |k: &str| query.with_untracked(|m| m.get(k).unwrap_or_default());
    let ctx = Action::new(|_: &()| report_context());
    Effect::new(move || {
        ctx.dispatch(());
    });
    move || {
        match ctx.value().get() {
        None => view! { <section class="panel"><h1>"Report"</h1><p>"Loading…"</p></section> }.into_any(),
        Some(Err(e)) => view! {
            <section class="panel"><h1>"Report"</h1><ErrorMessage error=Signal::derive(move || Some(e.clone()))/></section>
        }
        .into_any(),
        Some(Ok(c)) => {
            let initial = ReportRange::parse(&q("from"), &q("to")).unwrap_or_else(|_| ReportRange::last_days(c.today, 30));
            view! {
                <SourceArea ctx=c initial=initial kind=q("kind") id=q("id") step=q("step") hydrated=hydrated/>
            }
            .into_any()
        }
    }
    }
}

#[component]
fn SourceArea(
    ctx: ReportSetup,
    initial: ReportRange,
    kind: String,
    id: String,
    step: String,
    hydrated: ReadSignal<bool>,
) -> impl IntoView {
    let range = RangeState::new(initial, "custom");
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return view! { <section class="panel"><h1>"Report"</h1><p class="empty">"No such campaign or email."</p></section> }.into_any();
    };
    let source = StoredValue::new((kind, step));
    let (load, apply) = range.loader(initial, move |f, t| {
        let (kind, step) = source.get_value();
        report_drill(kind, id, step, f, t)
    });
    let tz = ctx.time_zone.clone();
    view! {
        <section class="panel">
            <p><a href=format!("/reports") data-test="back-to-reports">"← All reports"</a></p>
            {move || match load.value().get() {
                Some(Ok(d)) => view! {
                    <div class="panel-head">
                        <h1 data-test="source-name">{d.name.clone()}</h1>
                        <span class="muted">{format!("{} · days and hours in {tz}", d.kind_label)}</span>
                    </div>
                    {d.href.clone().map(|h| view! { <p><a href=h>"Open its page"</a></p> })}
                }.into_any(),
                _ => view! { <h1>"Report"</h1> }.into_any(),
            }}
            <RangePicker state=range today=ctx.today busy=load.pending() hydrated=hydrated apply=apply/>
        </section>
        {move || load.value().get().and_then(|r| r.ok()).map(drill_view)}
    }
    .into_any()
}

fn drill_view(d: Drill) -> impl IntoView {
    let r = d.overview.range;
    let q = format!(
        "kind={}&id={}&step={}&from={}&to={}",
        match d.source.kind {
            domain::reports::SourceKind::Campaign => "campaign",
            domain::reports::SourceKind::SequenceEmail => "sequence_email",
            domain::reports::SourceKind::ApiMessage => "api_message",
        },
        d.source.id,
        d.source.step_id,
        r.from,
        r.to
    );
    let exports = (format!("/reports/export/source.csv?{q}"), format!("/reports/export/source.svg?{q}"));
    let since_svg = d.since_svg.clone();
    let max_heat = d.heatmap.iter().flatten().filter_map(|f| f.shown()).max().unwrap_or(0).max(1) as f64;
    view! {
        {overview_view(d.overview.clone(), exports, false)}
        <section class="panel" data-test="since-send">
            <h2>"Opens and clicks since the send"</h2>
            <p class="hint">"Each message counted once, at its first open or click by a person, by the time after its delivery."</p>
            <div class="chart-stack">
                <div class="chart-box" data-test="since-chart-box" inner_html=since_svg></div>
                <div class="table-wrap">
                    <table data-test="since-table">
                        <caption class="visually-hidden">"Opens and clicks by time since the send"</caption>
                        <thead><tr><th scope="col">"After the send"</th><th scope="col">"Opened (people)"</th>
                            <th scope="col">"Clicked (people)"</th><th scope="col">"Opened so far"</th></tr></thead>
                        <tbody>
                            {d.since.iter().map(|p| view! {
                                <tr data-test="since-row"><th scope="row">{p.label.clone()}</th><td>{p.openers.label()}</td>
                                    <td>{p.clickers.label()}</td><td>{share_label(p.opened_share)}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </div>
        </section>
        <section class="panel" data-test="links">
            <h2>"Links by clicks"</h2>
            {if d.links.is_empty() {
                view! { <p class="empty" data-test="links-empty">"No link in this email has been clicked yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table data-test="links-table">
                            <caption class="visually-hidden">"Clicks per link, most clicked first"</caption>
                            <thead><tr><th scope="col">"Link"</th><th scope="col">"Clicks (people)"</th>
                                <th scope="col">"People who clicked"</th><th scope="col">"Machine clicks"</th></tr></thead>
                            <tbody>
                                {d.links.iter().map(|l| view! {
                                    <tr data-test="link-row"><th scope="row" class="url">{l.url.clone()}</th><td>{l.clicks.label()}</td>
                                        <td>{l.clickers.label()}</td><td>{l.machine_clicks.label()}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
        {(!d.breakdowns.is_empty()).then(|| {
            let breakdowns = d.breakdowns.clone();
            view! {
                <section class="panel" data-test="breakdowns">
                    <h2>"Who opened it, and where"</h2>
                    {breakdowns.iter().map(breakdown_view).collect_view()}
                </section>
            }
        })}
        <section class="panel" data-test="heatmap">
            <h2>"When people open it"</h2>
            <p class="hint">"Messages opened by people in the range, by weekday and hour (local time). Darker is more."</p>
            <svg class="heatmap" viewBox="0 0 760 200" role="img" aria-labelledby="heatmap-title" data-test="heatmap-chart">
                <title id="heatmap-title">"Opens by weekday and hour"</title>
                {(0..24).filter(|h| h % 3 == 0).map(|h| view! {
                    <text x=format!("{}", 90 + h * 27 + 13) y="12" text-anchor="middle" class="tick">{format!("{h:02}")}</text>
                }).collect_view()}
                {d.heatmap.iter().enumerate().map(|(day, row)| view! {
                    <g>
                        <text x="82" y=format!("{}", 32 + day * 24) text-anchor="end" class="tick">{WEEKDAYS[day]}</text>
                        {row.iter().enumerate().map(|(h, f)| {
                            let opacity = f.shown().map(|v| 0.08 + 0.92 * v as f64 / max_heat).unwrap_or(0.0);
                            view! {
                                <rect x=format!("{}", 90 + h * 27) y=format!("{}", 18 + day * 24) width="25" height="22"
                                    class=if f.is_hidden() { "cell hidden" } else { "cell" } fill-opacity=format!("{opacity:.2}")
                                    data-test="heat-cell">
                                    <title>{format!("{} {h:02}:00: {}", WEEKDAYS[day], f.label())}</title>
                                </rect>
                            }
                        }).collect_view()}
                    </g>
                }).collect_view()}
            </svg>
            <details>
                <summary>"The same figures as a table"</summary>
                <div class="table-wrap">
                    <table data-test="heatmap-table">
                        <thead><tr><th scope="col">"Weekday"</th>{(0..24).map(|h| view! { <th scope="col">{format!("{h:02}")}</th> }).collect_view()}</tr></thead>
                        <tbody>
                            {d.heatmap.iter().enumerate().map(|(day, row)| view! {
                                <tr><th scope="row">{WEEKDAYS[day]}</th>{row.iter().map(|f| view! { <td>{f.label()}</td> }).collect_view()}</tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </details>
        </section>
    }
}

/// The home page's headline figures: the last 7 days against the 7 before, with a link to the
/// reports.
#[component]
pub fn HomeFigures() -> impl IntoView {
    // One request, dispatched when the page hydrates: a chain of two would let the second leave
    // after a quick sign-out and be refused.
    let load = Action::new(|_: &()| report_home());
    Effect::new(move || {
        load.dispatch(());
    });
    move || {
        load.value().get().and_then(|r| r.ok()).map(|o| {
            view! {
                <section class="panel" data-test="home-figures">
                    <div class="panel-head">
                        <h2>"Last 7 days"</h2>
                        <a href="/reports">"All reports"</a>
                    </div>
                    {headline(&o, &[Metric::Sent, Metric::Delivered, Metric::OpenRate, Metric::ClickRate, Metric::Unsubscribes])}
                </section>
            }
        })
    }
}
