//! Plain HTTP routes that stream bodies (which server functions cannot): the CSV upload, the
//! import error report and the contacts export. Each authorises inside `service`.

use app::ssr::RequestContext;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use service::{Actor, ServiceError, Services};
use uuid::Uuid;

fn error(e: ServiceError) -> Response {
    if let ServiceError::Internal(_) = &e {
        tracing::error!(error = %e.log_detail(), "request failed");
    }
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(serde_json::json!({ "code": e.code(), "message": e.to_string() }))).into_response()
}

fn actor(ctx: &RequestContext) -> Result<Actor, ServiceError> {
    ctx.active().and_then(|s| s.actor(ctx.ip.clone())).ok_or(ServiceError::Unauthenticated)
}

pub async fn upload(State(svc): State<Services>, Extension(ctx): Extension<RequestContext>, body: Body) -> Response {
    let actor = match actor(&ctx) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let stream = body.into_data_stream().map(|r| {
        r.map(|b| b.to_vec()).map_err(|_| ServiceError::invalid("file", "upload was interrupted or is too large"))
    });
    let max = svc.settings().import_max_bytes;
    match service::contacts::import::upload(&svc, &actor, stream, max).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

fn csv_response(body: Body, filename: &str) -> Response {
    let mut res = Response::new(body);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

pub async fn import_errors(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(id.trim_end_matches(".csv")) else { return error(ServiceError::NotFound) };
    let actor = match actor(&ctx) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    match service::contacts::import::error_report(&svc, &actor, id).await {
        Ok(csv) => csv_response(Body::from(csv), &format!("import-{id}-errors.csv")),
        Err(e) => error(e),
    }
}

pub async fn export(State(svc): State<Services>, Extension(ctx): Extension<RequestContext>) -> Response {
    let actor = match actor(&ctx) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    match service::contacts::export::export(&svc, &actor).await {
        Ok(stream) => {
            let body = Body::from_stream(stream.map(|r| {
                r.map_err(|e| {
                    tracing::error!(error = %e.log_detail(), "export interrupted");
                    std::io::Error::other("export failed")
                })
            }));
            csv_response(body, "contacts.csv")
        }
        Err(e) => error(e),
    }
}

/// A report export (`overview.csv`, `overview.svg`, `comparison.csv`) for `?from=&to=`.
pub async fn report_export(
    State(svc): State<Services>,
    Extension(ctx): Extension<RequestContext>,
    Path(file): Path<String>,
    Query(q): Query<service::reports::ExportQuery>,
) -> Response {
    let actor = match actor(&ctx) {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    match service::reports::export(&svc, &actor, &file, &q).await {
        Ok(x) => {
            let mut res = Response::new(Body::from(x.body));
            res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(x.content_type));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", x.filename)) {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            res
        }
        Err(e) => error(e),
    }
}
