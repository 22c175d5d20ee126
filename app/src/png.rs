//! Chart PNG export, drawn by the browser: the chart's SVG (server-rendered, already on the page)
//! is loaded as a `data:` image (the page's CSP allows `img-src data:`, not `blob:`), drawn on a
//! canvas at twice its size on white, and saved as a PNG download. The server keeps no fonts and
//! rasterises nothing; the PNG shows exactly what the SVG shows, hidden figures included.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

pub fn save_chart(box_test: &str) {
    let _ = try_save(box_test);
}

fn try_save(box_test: &str) -> Option<()> {
    let doc = web_sys::window()?.document()?;
    let svg = doc.query_selector(&format!("[data-test={box_test}] svg")).ok()??;
    let width: f64 = svg.get_attribute("width")?.parse().ok()?;
    let height: f64 = svg.get_attribute("height")?.parse().ok()?;
    let markup = svg.outer_html();
    let url = format!("data:image/svg+xml;charset=utf-8,{}", js_sys::encode_uri_component(&markup));
    let img = web_sys::HtmlImageElement::new().ok()?;
    let image = img.clone();
    let name = format!("{box_test}.png");
    let onload = Closure::once(move || {
        let draw = || -> Option<()> {
            let doc = web_sys::window()?.document()?;
            let canvas: web_sys::HtmlCanvasElement = doc.create_element("canvas").ok()?.dyn_into().ok()?;
            canvas.set_width((width * 2.0) as u32);
            canvas.set_height((height * 2.0) as u32);
            let ctx: web_sys::CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
            ctx.scale(2.0, 2.0).ok()?;
            ctx.set_fill_style_str("#ffffff");
            ctx.fill_rect(0.0, 0.0, width, height);
            ctx.draw_image_with_html_image_element(&image, 0.0, 0.0).ok()?;
            let png = canvas.to_data_url_with_type("image/png").ok()?;
            let a: web_sys::HtmlAnchorElement = doc.create_element("a").ok()?.dyn_into().ok()?;
            a.set_href(&png);
            a.set_download(&name);
            doc.body()?.append_child(&a).ok()?;
            a.click();
            a.remove();
            Some(())
        };
        let _ = draw();
    });
    img.set_onload(Some(onload.as_ref().unchecked_ref()));
    onload.forget();
    img.set_src(&url);
    Some(())
}
