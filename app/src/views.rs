//! HTML pages with maud: inline CSS, no external assets, no JavaScript.
//!
//! Templates are Rust, checked by the compiler, and every `(value)` spliced into
//! them is HTML-escaped unless wrapped in `PreEscaped` (only the constant CSS is).
//! Employee names come from users: with escaping the default, a forgotten call
//! cannot become a stored XSS. maud over askama: no template files to keep in step
//! with the code, and the markup reads like the structure it builds.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::input::Submission;
use crate::model::{BADGES, Employee, FieldErrors, MAX_TEXT_CHARS};
use crate::state::AppState;

/// What every page shows about the serving instance.
#[derive(Clone, Debug)]
pub struct PageCtx {
    pub hostname: String,
    pub instance_id: String,
    pub availability_zone: String,
}

impl PageCtx {
    pub fn from_state(state: &AppState) -> PageCtx {
        let (instance_id, availability_zone) = match state.host_info_now() {
            Some(i) => (i.instance_id.clone(), i.availability_zone.clone()),
            None => ("looking up…".to_owned(), "looking up…".to_owned()),
        };
        PageCtx {
            hostname: state.hostname.clone(),
            instance_id,
            availability_zone,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Directory,
    Admin,
    Info,
    None,
}

/// An employee with a presigned photo link, ready to render.
pub struct Row<'a> {
    pub employee: &'a Employee,
    pub photo_url: Option<String>,
}

const CSS: &str = r#"
:root{--bg:#f4f6fb;--card:#fff;--ink:#1d2433;--muted:#5b6475;--brand:#1f4e8c;--brand2:#163a6b;--accent:#e8eef8;--danger:#b42318;--ok:#067647;--line:#dde3ee}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;background:var(--bg);color:var(--ink)}
.wrap{max-width:1080px;margin:0 auto;padding:0 20px}
header.top{background:linear-gradient(90deg,var(--brand2),var(--brand));color:#fff}
header.top .wrap{display:flex;align-items:center;gap:28px;min-height:58px;flex-wrap:wrap}
.brand{color:#fff;font-weight:700;text-decoration:none;font-size:17px;letter-spacing:.2px}
.brand span{display:inline-block;width:28px;height:24px;border-radius:6px;background:#fff;color:var(--brand);text-align:center;line-height:24px;margin-right:8px;font-size:12px}
nav a{color:#c9d8ef;text-decoration:none;margin-right:18px;font-weight:500}
nav a:hover,nav a.on{color:#fff}
.host{margin-left:auto;font-size:13px;background:rgba(255,255,255,.14);padding:4px 12px;border-radius:999px}
h1{font-size:26px;margin:30px 0 4px}
h2{font-size:18px;margin:24px 0 8px}
.sub{color:var(--muted);margin:0 0 22px}
.bar{display:flex;align-items:center;justify-content:space-between;gap:16px;flex-wrap:wrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px;box-shadow:0 1px 2px rgba(16,24,40,.05)}
.person{display:flex;gap:14px;align-items:flex-start}
a.name{font-weight:600;color:var(--ink);text-decoration:none;font-size:16px}
a.name:hover{color:var(--brand);text-decoration:underline}
.avatar{flex:none;width:60px;height:60px;border-radius:50%;object-fit:cover;display:flex;align-items:center;justify-content:center;background:var(--accent);color:var(--brand);font-weight:700;font-size:21px;border:1px solid var(--line)}
.avatar.big{width:140px;height:140px;font-size:44px}
.avatar.tiny{width:36px;height:36px;font-size:13px}
.badge{display:inline-block;font-size:12px;padding:1px 9px;border-radius:999px;background:#eef4ff;color:var(--brand);border:1px solid #c7d7f2;margin:6px 4px 0 0;white-space:nowrap}
.meta{color:var(--muted);font-size:14px}
table.list{width:100%;border-collapse:separate;border-spacing:0;background:var(--card);border:1px solid var(--line);border-radius:14px;overflow:hidden}
table.list th,table.list td{padding:10px 14px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
table.list tr:last-child td{border-bottom:0}
table.list th{background:#f8fafc;font-size:12px;text-transform:uppercase;letter-spacing:.4px;color:var(--muted);font-weight:600}
.who{display:flex;align-items:center;gap:10px}
.actions{white-space:nowrap;text-align:right}
.btn{display:inline-block;padding:8px 16px;border-radius:8px;border:1px solid var(--brand);background:var(--brand);color:#fff;text-decoration:none;font:inherit;font-weight:500;cursor:pointer}
.btn:hover{background:var(--brand2)}
.btn.secondary{background:#fff;color:var(--brand)}
.btn.danger{background:var(--danger);border-color:var(--danger)}
.btn.small{padding:3px 10px;font-size:13px}
form.stack{max-width:620px}
form.stack .field{margin-top:16px}
form.stack label.lbl{display:block;font-weight:600;margin-bottom:4px}
form.stack input[type=text]{width:100%;padding:9px 11px;border:1px solid #c5cedd;border-radius:8px;font:inherit;background:#fff}
form.stack input[type=text]:focus{outline:2px solid #b6cdf0;border-color:var(--brand)}
.field.err input[type=text]{border-color:var(--danger);background:#fffafa}
.error{color:var(--danger);font-size:13px;margin-top:4px}
.hint{color:var(--muted);font-size:13px;margin-top:4px}
.checks{display:flex;flex-wrap:wrap;gap:6px 18px}
.checks label{display:inline-flex;align-items:center;gap:6px}
.formbar{margin-top:24px;display:flex;gap:10px}
.notice{background:#ecfdf3;border:1px solid #abefc6;color:var(--ok);padding:10px 14px;border-radius:8px;margin:16px 0}
.alert{background:#fef3f2;border:1px solid #fecdca;color:var(--danger);padding:10px 14px;border-radius:8px;margin:16px 0}
dl.kv{display:grid;grid-template-columns:180px 1fr;gap:10px 16px;margin:0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;word-break:break-word}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
a{color:var(--brand)}
.profile{display:flex;gap:28px;align-items:center;flex-wrap:wrap}
.empty{text-align:center;padding:48px 20px;color:var(--muted)}
footer.wrap{color:var(--muted);font-size:13px;padding:36px 20px 28px}
footer b{color:var(--ink)}
"#;

pub fn layout(ctx: &PageCtx, title: &str, nav: Nav, body: Markup) -> String {
    let on = |n: Nav| (n == nav).then_some("on");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Employee Directory" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top { div.wrap {
                    a.brand href="/" { span { "ED" } "Employee Directory" }
                    nav {
                        a href="/" class=[on(Nav::Directory)] { "Directory" }
                        a href="/admin" class=[on(Nav::Admin)] { "Admin" }
                        a href="/info" class=[on(Nav::Info)] { "Instance" }
                    }
                    span.host title="The server that answered this request" {
                        "Served by " b { (ctx.hostname) }
                    }
                } }
                main.wrap { (body) }
                footer.wrap {
                    "Served by host " b { (ctx.hostname) }
                    " · instance " b { (ctx.instance_id) }
                    " · zone " b { (ctx.availability_zone) }
                }
            }
        }
    }
    .into_string()
}

fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

fn avatar(e: &Employee, url: Option<&str>, size: &str) -> Markup {
    html! {
        @match url {
            Some(u) => img class={ "avatar " (size) } src=(u) alt={ "Photo of " (e.full_name) };,
            None => div class={ "avatar " (size) } aria-hidden="true" { (initials(&e.full_name)) },
        }
    }
}

fn badges(e: &Employee) -> Markup {
    html! {
        @for b in &e.badges { span class="badge" { (b) } }
    }
}

/// The public, read-only directory.
pub fn directory(ctx: &PageCtx, rows: &[Row<'_>]) -> String {
    let body = html! {
        div.bar { div {
            h1 { "Our people" }
            p.sub { (rows.len()) " employee" @if rows.len() != 1 { "s" } " in the directory." }
        } }
        @if rows.is_empty() {
            div class="card empty" {
                "No employees yet. Add the first one from the " a href="/admin" { "admin pages" } "."
            }
        } @else {
            div.grid {
                @for r in rows {
                    @let e = r.employee;
                    div class="card person" {
                        (avatar(e, r.photo_url.as_deref(), ""))
                        div {
                            a.name href={ "/employees/" (e.id) } { (e.full_name) }
                            div.meta { (e.job_title) }
                            div.meta { (e.location) }
                            div { (badges(e)) }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "Directory", Nav::Directory, body)
}

pub fn profile(ctx: &PageCtx, row: &Row<'_>) -> String {
    let e = row.employee;
    let body = html! {
        p.meta style="margin-top:24px" { a href="/" { "← All employees" } }
        div.card { div.profile {
            (avatar(e, row.photo_url.as_deref(), "big"))
            div {
                h1 style="margin-top:0" { (e.full_name) }
                dl.kv {
                    dt { "Job title" } dd { (e.job_title) }
                    dt { "Location" } dd { (e.location) }
                    dt { "Badges" } dd { @if e.badges.is_empty() { "—" } @else { (badges(e)) } }
                    dt { "Employee id" } dd.mono { (e.id) }
                }
            }
        } }
    };
    layout(ctx, &e.full_name, Nav::Directory, body)
}

pub fn admin_list(ctx: &PageCtx, rows: &[Row<'_>], notice: Option<&str>) -> String {
    let body = html! {
        div.bar {
            div { h1 { "Manage employees" } p.sub { "Add, edit and remove directory entries." } }
            div { a.btn href="/admin/employees/new" { "+ Add employee" } }
        }
        @if let Some(n) = notice { div.notice { (n) } }
        @if rows.is_empty() {
            div class="card empty" { "The directory is empty." }
        } @else {
            table.list {
                thead { tr { th { "Name" } th { "Job title" } th { "Location" } th { "Badges" } th {} } }
                tbody {
                    @for r in rows {
                        @let e = r.employee;
                        tr {
                            td { div.who {
                                (avatar(e, r.photo_url.as_deref(), "tiny"))
                                a.name href={ "/employees/" (e.id) } { (e.full_name) }
                            } }
                            td { (e.job_title) }
                            td { (e.location) }
                            td { (badges(e)) }
                            td.actions {
                                a class="btn small secondary" href={ "/admin/employees/" (e.id) "/edit" } { "Edit" }
                                " "
                                a class="btn small danger" href={ "/admin/employees/" (e.id) "/delete" } { "Delete" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "Admin", Nav::Admin, body)
}

/// Which form: a new employee, or editing one (id, current photo link).
pub enum FormMode<'a> {
    New,
    Edit {
        id: &'a str,
        photo_url: Option<&'a str>,
    },
}

pub fn employee_form(
    ctx: &PageCtx,
    mode: &FormMode<'_>,
    sub: &Submission,
    errors: &FieldErrors,
) -> String {
    let (title, action) = match mode {
        FormMode::New => ("Add employee", "/admin/employees/new".to_owned()),
        FormMode::Edit { id, .. } => ("Edit employee", format!("/admin/employees/{id}/edit")),
    };
    let text_fields = [
        ("full_name", "Full name", &sub.full_name),
        ("job_title", "Job title", &sub.job_title),
        ("location", "Location", &sub.location),
    ];
    let field_class = |name: &str| {
        if errors.contains_key(name) {
            "field err"
        } else {
            "field"
        }
    };
    let body = html! {
        h1 { (title) }
        p.sub { "All fields except badges and photo are required." }
        @if !errors.is_empty() {
            div.alert {
                "Please correct the highlighted fields."
                @if let Some(m) = errors.get("body") { " The form " (m) "." }
            }
        }
        form class="stack card" method="post" action=(action) enctype="multipart/form-data" {
            @for (name, label, value) in text_fields {
                div class=(field_class(name)) {
                    label.lbl for=(name) { (label) }
                    input type="text" id=(name) name=(name) value=(value.as_deref().unwrap_or(""))
                        maxlength=(MAX_TEXT_CHARS) required;
                    (field_error(name, errors.get(name)))
                }
            }
            div.field {
                span.lbl style="font-weight:600" { "Badges" }
                div.checks {
                    @for b in BADGES {
                        label {
                            input type="checkbox" name="badges" value=(b)
                                checked[sub.badges.iter().any(|x| x == b)];
                            " " (b)
                        }
                    }
                }
                (field_error("badges", errors.get("badges")))
            }
            div class=(field_class("photo")) {
                label.lbl for="photo" { "Photo" }
                @if let FormMode::Edit { photo_url: Some(url), .. } = mode {
                    div.who style="margin-bottom:8px" {
                        img.avatar src=(url) alt="Current photo";
                        label {
                            input type="checkbox" name="remove_photo" value="1" checked[sub.remove_photo];
                            " Remove current photo"
                        }
                    }
                }
                input type="file" id="photo" name="photo" accept="image/jpeg,image/png,image/gif,image/webp";
                div.hint {
                    "JPEG or PNG, at most 5 MiB; stored as a 256\u{a0}px thumbnail."
                    @if !errors.is_empty() { " If you chose a photo, choose it again." }
                }
                (field_error("photo", errors.get("photo")))
            }
            div.formbar {
                button.btn type="submit" { "Save" }
                a class="btn secondary" href="/admin" { "Cancel" }
            }
        }
    };
    layout(ctx, title, Nav::Admin, body)
}

fn field_error(name: &str, msg: Option<&String>) -> Markup {
    html! {
        @if let Some(m) = msg { div class="error" id={ (name) "-error" } { (m) } }
    }
}

pub fn delete_confirm(ctx: &PageCtx, e: &Employee) -> String {
    let body = html! {
        h1 { "Delete employee" }
        div.card {
            p { "Delete " b { (e.full_name) } " (" (e.job_title) ", " (e.location) ") and their photo? This cannot be undone." }
            form method="post" action={ "/admin/employees/" (e.id) "/delete" } class="formbar" {
                button class="btn danger" type="submit" { "Delete" }
                a class="btn secondary" href="/admin" { "Cancel" }
            }
        }
    };
    layout(ctx, "Delete employee", Nav::Admin, body)
}

/// `/info` as a page: `pairs` are label and value.
pub fn info(ctx: &PageCtx, pairs: &[(&str, String)]) -> String {
    let body = html! {
        h1 { "This instance" }
        p.sub { "Reload to see the load balancer pick another instance." }
        div.card { dl.kv {
            @for (k, v) in pairs { dt { (k) } dd class="mono" { (v) } }
        } }
        p.meta {
            "Also as JSON: " a href="/info?format=json" { "/info?format=json" }
            " · " a href="/metrics" { "/metrics" }
            " · " a href="/health?deep=1" { "/health?deep=1" }
        }
    };
    layout(ctx, "Instance", Nav::Info, body)
}

pub fn error_page(ctx: &PageCtx, status: u16, title: &str, message: &str) -> String {
    let body = html! {
        div class="card empty" style="margin-top:32px" {
            h1 style="margin-top:0" { (status) " · " (title) }
            p { (message) }
            p { a class="btn secondary" href="/" { "Back to the directory" } }
        }
    };
    layout(ctx, title, Nav::None, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("ada  king lovelace"), "AK");
        assert_eq!(initials(""), "");
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let evil = r#"<script>alert("x")</script>"#;
        let e = Employee {
            id: "0b6f2c9e-0000-4000-8000-000000000000".into(),
            full_name: evil.into(),
            job_title: evil.into(),
            location: evil.into(),
            badges: vec![],
            photo_key: None,
        };
        let ctx = PageCtx {
            hostname: evil.into(),
            instance_id: evil.into(),
            availability_zone: evil.into(),
        };
        let rows = [Row {
            employee: &e,
            photo_url: Some(format!("https://x/{evil}")),
        }];
        for page in [
            directory(&ctx, &rows),
            admin_list(&ctx, &rows, Some(evil)),
            profile(&ctx, &rows[0]),
            delete_confirm(&ctx, &e),
            error_page(&ctx, 404, evil, evil),
        ] {
            assert!(!page.contains("<script>"), "{page}");
            assert!(
                page.contains("&lt;script&gt;alert(&quot;x&quot;)"),
                "{page}"
            );
        }
    }
}
