//! HTML pages, hand-written: inline CSS, no external assets, no JavaScript.
//!
//! Every value that came from a user or from AWS goes through [`esc`].

use std::fmt::Write;

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

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

pub fn layout(ctx: &PageCtx, title: &str, nav: Nav, body: &str) -> String {
    let on = |n: Nav| if n == nav { " class=\"on\"" } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Employee Directory</title><style>{CSS}</style></head>
<body>
<header class="top"><div class="wrap">
<a class="brand" href="/"><span>ED</span>Employee Directory</a>
<nav><a href="/"{d}>Directory</a><a href="/admin"{a}>Admin</a><a href="/info"{i}>Instance</a></nav>
<span class="host" title="The server that answered this request">Served by <b>{host}</b></span>
</div></header>
<main class="wrap">
{body}
</main>
<footer class="wrap">Served by host <b>{host}</b> · instance <b>{iid}</b> · zone <b>{az}</b></footer>
</body></html>
"#,
        title = esc(title),
        d = on(Nav::Directory),
        a = on(Nav::Admin),
        i = on(Nav::Info),
        host = esc(&ctx.hostname),
        iid = esc(&ctx.instance_id),
        az = esc(&ctx.availability_zone),
    )
}

fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

fn avatar(e: &Employee, url: Option<&str>, size: &str) -> String {
    match url {
        Some(u) => format!(
            r#"<img class="avatar {size}" src="{}" alt="Photo of {}">"#,
            esc(u),
            esc(&e.full_name)
        ),
        None => format!(
            r#"<div class="avatar {size}" aria-hidden="true">{}</div>"#,
            esc(&initials(&e.full_name))
        ),
    }
}

fn badges(e: &Employee) -> String {
    e.badges
        .iter()
        .map(|b| format!(r#"<span class="badge">{}</span>"#, esc(b)))
        .collect()
}

/// The public, read-only directory.
pub fn directory(ctx: &PageCtx, rows: &[Row<'_>]) -> String {
    let mut body = format!(
        r#"<div class="bar"><div><h1>Our people</h1><p class="sub">{} employee{} in the directory.</p></div></div>"#,
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if rows.is_empty() {
        body.push_str(r#"<div class="card empty">No employees yet. Add the first one from the <a href="/admin">admin pages</a>.</div>"#);
    } else {
        body.push_str(r#"<div class="grid">"#);
        for r in rows {
            let e = r.employee;
            let _ = write!(
                body,
                r#"<div class="card person">{av}<div><a class="name" href="/employees/{id}">{name}</a><div class="meta">{title}</div><div class="meta">{loc}</div><div>{badges}</div></div></div>"#,
                av = avatar(e, r.photo_url.as_deref(), ""),
                id = esc(&e.id),
                name = esc(&e.full_name),
                title = esc(&e.job_title),
                loc = esc(&e.location),
                badges = badges(e),
            );
        }
        body.push_str("</div>");
    }
    layout(ctx, "Directory", Nav::Directory, &body)
}

pub fn profile(ctx: &PageCtx, row: &Row<'_>) -> String {
    let e = row.employee;
    let body = format!(
        r#"<p class="meta" style="margin-top:24px"><a href="/">← All employees</a></p>
<div class="card"><div class="profile">{av}<div><h1 style="margin-top:0">{name}</h1>
<dl class="kv"><dt>Job title</dt><dd>{title}</dd><dt>Location</dt><dd>{loc}</dd><dt>Badges</dt><dd>{badges}</dd><dt>Employee id</dt><dd class="mono">{id}</dd></dl>
</div></div></div>"#,
        av = avatar(e, row.photo_url.as_deref(), "big"),
        name = esc(&e.full_name),
        title = esc(&e.job_title),
        loc = esc(&e.location),
        badges = if e.badges.is_empty() {
            "—".to_owned()
        } else {
            badges(e)
        },
        id = esc(&e.id),
    );
    layout(ctx, &e.full_name, Nav::Directory, &body)
}

pub fn admin_list(ctx: &PageCtx, rows: &[Row<'_>], notice: Option<&str>) -> String {
    let mut body = String::from(
        r#"<div class="bar"><div><h1>Manage employees</h1><p class="sub">Add, edit and remove directory entries.</p></div><div><a class="btn" href="/admin/employees/new">+ Add employee</a></div></div>"#,
    );
    if let Some(n) = notice {
        let _ = write!(body, r#"<div class="notice">{}</div>"#, esc(n));
    }
    if rows.is_empty() {
        body.push_str(r#"<div class="card empty">The directory is empty.</div>"#);
    } else {
        body.push_str(r#"<table class="list"><thead><tr><th>Name</th><th>Job title</th><th>Location</th><th>Badges</th><th></th></tr></thead><tbody>"#);
        for r in rows {
            let e = r.employee;
            let _ = write!(
                body,
                r#"<tr><td><div class="who">{av}<a class="name" href="/employees/{id}">{name}</a></div></td><td>{title}</td><td>{loc}</td><td>{badges}</td><td class="actions"><a class="btn small secondary" href="/admin/employees/{id}/edit">Edit</a> <a class="btn small danger" href="/admin/employees/{id}/delete">Delete</a></td></tr>"#,
                av = avatar(e, r.photo_url.as_deref(), "tiny"),
                id = esc(&e.id),
                name = esc(&e.full_name),
                title = esc(&e.job_title),
                loc = esc(&e.location),
                badges = badges(e),
            );
        }
        body.push_str("</tbody></table>");
    }
    layout(ctx, "Admin", Nav::Admin, &body)
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
        FormMode::New => ("Add employee".to_owned(), "/admin/employees/new".to_owned()),
        FormMode::Edit { id, .. } => (
            "Edit employee".to_owned(),
            format!("/admin/employees/{}/edit", esc(id)),
        ),
    };
    let mut body = format!(
        r#"<h1>{title}</h1><p class="sub">All fields except badges and photo are required.</p>"#
    );
    if !errors.is_empty() {
        body.push_str(r#"<div class="alert">Please correct the highlighted fields."#);
        if let Some(m) = errors.get("body") {
            let _ = write!(body, " The form {}.", esc(m));
        }
        body.push_str("</div>");
    }
    let _ = write!(
        body,
        r#"<form class="stack card" method="post" action="{action}" enctype="multipart/form-data">"#
    );
    for (name, label, value) in [
        ("full_name", "Full name", &sub.full_name),
        ("job_title", "Job title", &sub.job_title),
        ("location", "Location", &sub.location),
    ] {
        let err = errors.get(name);
        let _ = write!(
            body,
            r#"<div class="field{cls}"><label class="lbl" for="{name}">{label}</label><input type="text" id="{name}" name="{name}" value="{value}" maxlength="{MAX_TEXT_CHARS}" required>{msg}</div>"#,
            cls = if err.is_some() { " err" } else { "" },
            value = esc(value.as_deref().unwrap_or("")),
            msg = field_error(name, err),
        );
    }
    body.push_str(r#"<div class="field"><span class="lbl" style="font-weight:600">Badges</span><div class="checks">"#);
    for b in BADGES {
        let checked = if sub.badges.iter().any(|x| x == b) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<label><input type="checkbox" name="badges" value="{v}"{checked}> {v}</label>"#,
            v = esc(b)
        );
    }
    let _ = write!(
        body,
        "</div>{}</div>",
        field_error("badges", errors.get("badges"))
    );

    let current = match mode {
        FormMode::Edit {
            photo_url: Some(url),
            ..
        } => format!(
            r#"<div class="who" style="margin-bottom:8px"><img class="avatar" src="{}" alt="Current photo"><label><input type="checkbox" name="remove_photo" value="1"{}> Remove current photo</label></div>"#,
            esc(url),
            if sub.remove_photo { " checked" } else { "" }
        ),
        _ => String::new(),
    };
    let _ = write!(
        body,
        r#"<div class="field{cls}"><label class="lbl" for="photo">Photo</label>{current}<input type="file" id="photo" name="photo" accept="image/jpeg,image/png,image/gif,image/webp"><div class="hint">JPEG or PNG, at most 5 MiB; stored as a 256&nbsp;px thumbnail.{again}</div>{msg}</div>"#,
        cls = if errors.contains_key("photo") {
            " err"
        } else {
            ""
        },
        again = if errors.is_empty() {
            ""
        } else {
            " If you chose a photo, choose it again."
        },
        msg = field_error("photo", errors.get("photo")),
    );
    body.push_str(r#"<div class="formbar"><button class="btn" type="submit">Save</button><a class="btn secondary" href="/admin">Cancel</a></div></form>"#);
    layout(ctx, &title, Nav::Admin, &body)
}

fn field_error(name: &str, msg: Option<&String>) -> String {
    match msg {
        Some(m) => format!(r#"<div class="error" id="{name}-error">{}</div>"#, esc(m)),
        None => String::new(),
    }
}

pub fn delete_confirm(ctx: &PageCtx, e: &Employee) -> String {
    let body = format!(
        r#"<h1>Delete employee</h1><div class="card"><p>Delete <b>{name}</b> ({title}, {loc}) and their photo? This cannot be undone.</p>
<form method="post" action="/admin/employees/{id}/delete" class="formbar"><button class="btn danger" type="submit">Delete</button><a class="btn secondary" href="/admin">Cancel</a></form></div>"#,
        name = esc(&e.full_name),
        title = esc(&e.job_title),
        loc = esc(&e.location),
        id = esc(&e.id),
    );
    layout(ctx, "Delete employee", Nav::Admin, &body)
}

/// `/info` as a page: `pairs` are label and value.
pub fn info(ctx: &PageCtx, pairs: &[(&str, String)]) -> String {
    let mut body = String::from(
        r#"<h1>This instance</h1><p class="sub">Reload to see the load balancer pick another instance.</p><div class="card"><dl class="kv">"#,
    );
    for (k, v) in pairs {
        let _ = write!(
            body,
            r#"<dt>{}</dt><dd class="mono">{}</dd>"#,
            esc(k),
            esc(v)
        );
    }
    body.push_str(r#"</dl></div><p class="meta">Also as JSON: <a href="/info?format=json">/info?format=json</a> · <a href="/metrics">/metrics</a> · <a href="/health?deep=1">/health?deep=1</a></p>"#);
    layout(ctx, "Instance", Nav::Info, &body)
}

pub fn error_page(ctx: &PageCtx, status: u16, title: &str, message: &str) -> String {
    let body = format!(
        r#"<div class="card empty" style="margin-top:32px"><h1 style="margin-top:0">{status} · {title}</h1><p>{msg}</p><p><a class="btn secondary" href="/">Back to the directory</a></p></div>"#,
        title = esc(title),
        msg = esc(message),
    );
    layout(ctx, title, Nav::None, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_initials() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(initials("ada  king lovelace"), "AK");
        assert_eq!(initials(""), "");
    }
}
