//! Template rendering: Handlebars in strict mode, partials, and the helpers users expect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handlebars::{
    Context, Handlebars, Helper, HelperDef, JsonRender, Output, RenderContext, RenderError,
    RenderErrorReason, Renderable, ScopedJson, Template,
};
use serde_json::Value;

use crate::diagnostics::{Diagnostic, Diagnostics, Location};

mod nesting;
mod pieces;

use nesting::{GraphError, PartialDepths, Shape, MAX_DEPTH};

/// Templates from this size on are rendered piece by piece instead of compiled whole.
const LARGE_TEMPLATE: usize = 256 * 1024;
/// Smallest piece of a large template: big enough that per-piece overhead does not count.
const PIECE: usize = 64 * 1024;

/// A renderer that a plan's files share, to render their templates again when needed.
pub(crate) type SharedRenderer = std::sync::Arc<std::sync::Mutex<Renderer>>;

/// Renders the templates of one source tree; each template is compiled once, except large
/// ones, which are compiled a piece at a time on every render and never held compiled.
pub struct Renderer {
    hb: Handlebars<'static>,
    dir: PathBuf,
    registered: BTreeSet<String>,
    /// Source text of the large templates, by name.
    large: BTreeMap<String, String>,
    /// How deep each partial nests, so a template that would go too deep is refused.
    depths: PartialDepths,
    /// The partials each partial includes, by name, broken ones too.
    includes: BTreeMap<String, Vec<String>>,
    /// Partials that cannot be used, with why: only a template that includes one (directly
    /// or through other partials) fails with it, so a broken partial no role uses breaks
    /// no role.
    broken: BTreeMap<String, Diagnostic>,
    /// A copy of the last shared context whose vars each file's own replace in turn, so a
    /// file with vars of its own does not copy the facts again.
    scratch: Option<(std::sync::Arc<Context>, Context)>,
}

impl Renderer {
    /// Prepares a renderer over `templates_dir`, registering every partial in `partials/`;
    /// the errors of those that cannot be used are kept for the templates that include
    /// them (and for [`Renderer::partial_errors`]).
    pub fn new(templates_dir: &Path) -> Renderer {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // These are config files, not HTML: `&` and `<` must come out as written.
        hb.register_escape_fn(handlebars::no_escape);
        register_helpers(&mut hb);
        let mut renderer = Renderer {
            hb,
            dir: templates_dir.to_path_buf(),
            registered: BTreeSet::new(),
            large: BTreeMap::new(),
            depths: PartialDepths::default(),
            includes: BTreeMap::new(),
            broken: BTreeMap::new(),
            scratch: None,
        };
        let partials_dir = templates_dir.join("partials");
        let mut partials = Vec::new();
        collect_files(&partials_dir, &mut partials);
        partials.sort();
        let mut shapes = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for path in partials {
            let rel = path.strip_prefix(&partials_dir).unwrap_or(&path);
            let name = rel.with_extension("").to_string_lossy().into_owned();
            let display = display_path(templates_dir, &path);
            match crate::role::load::read_source_text(&path) {
                Ok(text) => {
                    let shape = nesting::scan(&text);
                    let included = shape.includes.iter().filter_map(|i| i.name.clone());
                    renderer.includes.insert(name.clone(), included.collect());
                    if let Err(e) = check_shape(&display, &text, &shape) {
                        renderer.broken.insert(name.clone(), e);
                    } else if let Err(e) = renderer.hb.register_partial(&name, &text) {
                        let e = template_error(&display, &text, &e);
                        renderer.broken.insert(name.clone(), e);
                    } else {
                        shapes.insert(name.clone(), shape);
                    }
                    sources.insert(name, (display, text));
                }
                Err(e) => {
                    let e = Diagnostic::new(format!("cannot read {}: {e}", display.display()));
                    renderer.broken.insert(name, e);
                }
            }
        }
        let (depths, graph_errors) = PartialDepths::new(&shapes);
        for (name, error) in graph_errors {
            let (display, text) = &sources[&name];
            let e = match error {
                GraphError::Cycle { path, offset } => Diagnostic::at_offset(
                    display,
                    text,
                    offset,
                    format!("partials include each other: {}", path.join(" -> ")),
                ),
                GraphError::TooDeep { path, offset } => {
                    Diagnostic::at_offset(display, text, offset, too_deep(&path))
                }
            };
            renderer.broken.entry(name).or_insert(e);
        }
        renderer.depths = depths;
        renderer
    }

    /// Every partial that cannot be used, with why (for `validate` and `publish`, which
    /// check a tree as a whole).
    pub(crate) fn partial_errors(&self) -> Diagnostics {
        Diagnostics(self.broken.values().cloned().collect())
    }

    /// The error of the first broken partial that `shape` includes, directly or through
    /// other partials. A template that reaches one is not compiled: a partial in a cycle
    /// stays registered, and rendering through it would recurse without end.
    fn broken_include(&self, shape: &Shape) -> Option<Diagnostic> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<&str> = shape
            .includes
            .iter()
            .filter_map(|i| i.name.as_deref())
            .collect();
        while let Some(name) = pending.pop() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(e) = self.broken.get(name) {
                return Some(e.clone());
            }
            if let Some(next) = self.includes.get(name) {
                pending.extend(next.iter().map(String::as_str));
            }
        }
        None
    }

    /// Whether `name` (relative to `templates/`) exists.
    pub fn exists(&self, name: &str) -> bool {
        self.registered.contains(name)
            || self.large.contains_key(name)
            || (safe_relative(name) && self.dir.join(name).is_file())
    }

    /// Renders `name` (relative to `templates/`) with `context` (`{facts, vars}`).
    pub fn render<T: serde::Serialize>(
        &mut self,
        name: &str,
        context: &T,
    ) -> Result<String, Diagnostic> {
        let context = Context::wraps(context)
            .map_err(|e| Diagnostic::new(format!("template context for '{name}': {e}")))?;
        self.render_context(name, &context)
    }

    /// Renders `name` with the shared context `base` (`{facts, vars}`) whose vars are
    /// replaced by `vars`: the facts are copied once per shared context, not once per file.
    pub(crate) fn render_with_vars(
        &mut self,
        name: &str,
        base: &std::sync::Arc<Context>,
        vars: Value,
    ) -> Result<String, Diagnostic> {
        let (held, mut context) = match self.scratch.take() {
            Some((held, context)) if std::sync::Arc::ptr_eq(&held, base) => (held, context),
            _ => (base.clone(), Context::from(base.data().clone())),
        };
        match context.data_mut() {
            Value::Object(data) => {
                data.insert("vars".to_owned(), vars);
            }
            _ => return Err(Diagnostic::new("template context must be an object")),
        }
        let out = self.render_context(name, &context);
        self.scratch = Some((held, context));
        out
    }

    /// Renders `name` with a context built once: a role's files that share it (no per-file
    /// vars) do not pay for converting the facts again each time.
    pub(crate) fn render_context(
        &mut self,
        name: &str,
        context: &Context,
    ) -> Result<String, Diagnostic> {
        let path = self.dir.join(name);
        let display = display_path(&self.dir, &path);
        if !self.registered.contains(name) && !self.large.contains_key(name) {
            if !safe_relative(name) {
                return Err(Diagnostic::new(format!(
                    "template '{name}' must be a relative path inside templates/"
                )));
            }
            let text = crate::role::load::read_source_text(&path).map_err(|e| {
                Diagnostic::new(format!("cannot read template {}: {e}", display.display()))
            })?;
            let shape = nesting::scan(&text);
            check_shape(&display, &text, &shape)?;
            if let Some(e) = self.broken_include(&shape) {
                return Err(e);
            }
            if let (depth, Some((inc, chain))) = self.depths.of(&shape) {
                if depth > MAX_DEPTH {
                    let mut path = vec![name.to_owned()];
                    path.extend(chain);
                    let message = too_deep(&path);
                    return Err(Diagnostic::at_offset(&display, &text, inc.offset, message));
                }
            }
            if text.len() >= LARGE_TEMPLATE {
                self.large.insert(name.to_owned(), text);
            } else {
                self.register(name, &display, &text)?;
            }
        }
        if let Some(text) = self.large.get(name) {
            match render_pieces(&self.hb, name, text, context) {
                Ok(Some(out)) => return Ok(out),
                Ok(None) => {
                    // Not cut, or a piece did not compile: the whole template decides, and
                    // its errors carry the right positions.
                    let text = self.large.remove(name).expect("just looked up");
                    self.register(name, &display, &text)?;
                }
                Err(e) => return Err(render_error(&self.dir, &display, text, &e)),
            }
        }
        self.hb.render_with_context(name, context).map_err(|e| {
            let text = crate::role::load::read_source_text(&path).unwrap_or_default();
            render_error(&self.dir, &display, &text, &e)
        })
    }

    fn register(&mut self, name: &str, display: &Path, text: &str) -> Result<(), Diagnostic> {
        self.hb
            .register_template_string(name, text)
            .map_err(|e| template_error(display, text, &e))?;
        self.registered.insert(name.to_owned());
        Ok(())
    }
}

/// Renders `text` one piece at a time, each compiled, rendered and dropped in turn.
///
/// `Ok(None)` when the template cannot be cut or a piece does not compile on its own. A
/// render error's line is moved from its piece to the whole template.
fn render_pieces(
    hb: &Handlebars<'static>,
    name: &str,
    text: &str,
    context: &Context,
) -> Result<Option<String>, RenderError> {
    let Some(pieces) = pieces::split(text, PIECE).filter(|p| p.len() > 1) else {
        return Ok(None);
    };
    let mut out = Append(String::with_capacity(text.len()));
    for piece in pieces {
        let Ok(template) = Template::compile_with_name(piece.text, name.to_owned()) else {
            return Ok(None);
        };
        let mut rc = RenderContext::new(template.name.as_ref());
        template
            .render(hb, context, &mut rc, &mut out)
            .map_err(|mut e| {
                let in_piece = e.template_name.as_deref().is_none_or(|n| n == name);
                if let (true, Some(line)) = (in_piece, e.line_no.as_mut()) {
                    *line += piece.lines_before;
                }
                e
            })?;
    }
    Ok(Some(out.0))
}

/// Rendered output appended to one growing string.
struct Append(String);

impl Output for Append {
    fn write(&mut self, seg: &str) -> std::io::Result<()> {
        self.0.push_str(seg);
        Ok(())
    }
}

/// Refuses what the scan shows the renderer could not get through: blocks nested past the
/// limit, and partials named by an expression (which could include themselves without end).
fn check_shape(display: &Path, text: &str, shape: &Shape) -> Result<(), Diagnostic> {
    if let Some(offset) = shape.too_deep_at {
        let message = format!("blocks nest deeper than {MAX_DEPTH} levels here");
        return Err(Diagnostic::at_offset(display, text, offset, message));
    }
    if let Some(inc) = shape.includes.iter().find(|i| i.name.is_none()) {
        let message = "a partial's name must be written out, not computed: \
                       converge checks partials for recursion before rendering";
        return Err(Diagnostic::at_offset(display, text, inc.offset, message));
    }
    Ok(())
}

fn too_deep(path: &[String]) -> String {
    format!(
        "blocks and partials nest deeper than {MAX_DEPTH} levels: {}",
        path.join(" -> ")
    )
}

/// `templates/NAME` as shown in messages.
fn display_path(templates_dir: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix(templates_dir).unwrap_or(path);
    Path::new("templates").join(rel)
}

fn safe_relative(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn template_error(display: &Path, text: &str, e: &handlebars::TemplateError) -> Diagnostic {
    let message = format!("template syntax: {}", e.reason());
    match e.pos() {
        Some((line, col)) => Diagnostic::at(
            Location {
                file: display.into(),
                line,
                col,
            },
            text,
            message,
        ),
        None => Diagnostic::new(format!("{}: {message}", display.display())),
    }
}

fn render_error(dir: &Path, display: &Path, text: &str, e: &RenderError) -> Diagnostic {
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("missing variable '{path}'"),
        RenderErrorReason::MissingVariable(None) => "missing variable".to_owned(),
        RenderErrorReason::PartialNotFound(name) => {
            format!("partial '{name}' not found (expected templates/partials/{name}.hbs)")
        }
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper '{name}'"),
        other => other.to_string(),
    };
    // An error inside a partial names the partial; point at its own file then.
    let (display, text) = match &e.template_name {
        Some(name) if Path::new(display) != display_path(dir, &dir.join(name)) => {
            let partial = dir.join("partials").join(format!("{name}.hbs"));
            match crate::role::load::read_source_text(&partial) {
                Ok(t) => (display_path(dir, &partial), t),
                Err(_) => (display.to_path_buf(), text.to_owned()),
            }
        }
        _ => (display.to_path_buf(), text.to_owned()),
    };
    match (e.line_no, e.column_no) {
        (Some(line), Some(col)) => Diagnostic::at(
            Location {
                file: display.into(),
                line,
                col,
            },
            &text,
            message,
        ),
        _ => Diagnostic::new(format!("{}: {message}", display.display())),
    }
}

/// What a value helper computes from its parameters; an error names the parameter (by
/// index) and what was expected of it, never its value (it may be a secret).
type Compute = fn(&[&Value]) -> Result<Value, (usize, &'static str)>;

/// A value helper whose parameters must all exist (strict mode reaches into helpers too).
struct Strict {
    arity: std::ops::RangeInclusive<usize>,
    compute: Compute,
}

impl HelperDef for Strict {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let params = h.params();
        if !self.arity.contains(&params.len()) {
            let (lo, hi) = (self.arity.start(), self.arity.end());
            let expected = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo} to {hi}")
            };
            return Err(RenderErrorReason::Other(format!(
                "helper '{}' takes {expected} parameters, got {}",
                h.name(),
                params.len()
            ))
            .into());
        }
        if let Some(missing) = params.iter().find(|p| p.is_value_missing()) {
            return Err(
                RenderErrorReason::MissingVariable(missing.relative_path().cloned()).into(),
            );
        }
        let values: Vec<&Value> = params.iter().map(|p| p.value()).collect();
        (self.compute)(&values)
            .map(ScopedJson::Derived)
            .map_err(|(i, expected)| {
                let param = &params[i];
                let what = match param.relative_path() {
                    Some(path) => format!("'{path}'"),
                    None => format!("parameter {}", i + 1),
                };
                let message = format!(
                    "helper '{}': {what} is {}, expected {expected}",
                    h.name(),
                    kind_of(param.value())
                );
                RenderErrorReason::Other(message).into()
            })
    }
}

/// `default`: the first parameter unless it is missing or null, then the second.
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let (Some(value), Some(fallback)) = (h.param(0), h.param(1)) else {
            return Err(RenderErrorReason::Other(
                "helper 'default' takes 2 parameters: value and fallback".to_owned(),
            )
            .into());
        };
        let chosen = if value.is_value_missing() || value.value().is_null() {
            fallback.value()
        } else {
            value.value()
        };
        Ok(ScopedJson::Derived(chosen.clone()))
    }
}

fn register_helpers(hb: &mut Handlebars<'static>) {
    hb.register_helper("default", Box::new(DefaultHelper));
    let helpers: [(&str, std::ops::RangeInclusive<usize>, Compute); 5] = [
        ("join", 1..=2, join),
        ("upper", 1..=1, |v| {
            Ok(Value::String(v[0].render().to_uppercase()))
        }),
        ("lower", 1..=1, |v| {
            Ok(Value::String(v[0].render().to_lowercase()))
        }),
        ("json", 1..=1, |v| Ok(Value::String(v[0].to_string()))),
        ("indent", 2..=2, indent),
    ];
    for (name, arity, compute) in helpers {
        hb.register_helper(name, Box::new(Strict { arity, compute }));
    }
}

/// A value's type, for messages that must not show the value.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

fn join(v: &[&Value]) -> Result<Value, (usize, &'static str)> {
    let sep = v.get(1).map_or(", ".to_owned(), |s| s.render());
    let items = v[0].as_array().ok_or((0, "a list"))?;
    let parts: Vec<String> = items.iter().map(|i| i.render()).collect();
    Ok(Value::String(parts.join(&sep)))
}

fn indent(v: &[&Value]) -> Result<Value, (usize, &'static str)> {
    let width = v[1]
        .as_u64()
        .filter(|w| *w <= 1000)
        .ok_or((1, "a number of spaces from 0 to 1000"))?;
    let pad = " ".repeat(width as usize);
    let text = v[0].render();
    let out: Vec<String> = text
        .split('\n')
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect();
    Ok(Value::String(out.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, Renderer) {
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        }
        let r = Renderer::new(dir.path());
        (dir, r)
    }

    #[test]
    fn helpers_render_as_documented() {
        let (_d, mut r) = setup(&[
            ("partials/head.hbs", "# {{upper facts.hostname}}\n"),
            (
                "t.hbs",
                "{{> head}}\n{{default vars.missing 7}} {{join vars.l \"-\"}} {{lower \"AB\"}} {{json vars.l}}\n{{indent vars.text 2}}\n{{#if (gt vars.n 3)}}big{{/if}} {{#if (eq vars.s \"x\")}}x{{/if}} & <",
            ),
        ]);
        let ctx = json!({"facts": {"hostname": "web1"}, "vars": {"l": ["a", "b"], "n": 4, "s": "x", "text": "a\nb"}});
        assert_eq!(
            r.render("t.hbs", &ctx).unwrap(),
            "# WEB1\n7 a-b ab [\"a\",\"b\"]\n  a\n  b\nbig x & <"
        );
    }

    #[test]
    fn missing_variable_names_template_line_and_column() {
        let (_d, mut r) = setup(&[("app/x.hbs", "a\nport = {{vars.port}}\n")]);
        let e = r
            .render("app/x.hbs", &json!({"vars": {}, "facts": {}}))
            .unwrap_err();
        assert_eq!(
            e.headline(),
            "templates/app/x.hbs:2:8: missing variable 'vars.port'"
        );
    }

    #[test]
    fn missing_variable_inside_a_helper_is_an_error_too() {
        let (_d, mut r) = setup(&[("x.hbs", "{{upper vars.nope}}")]);
        let e = r.render("x.hbs", &json!({"vars": {}})).unwrap_err();
        assert_eq!(
            e.headline(),
            "templates/x.hbs:1:1: missing variable 'vars.nope'"
        );
    }

    /// A generated config bigger than `LARGE_TEMPLATE`, one block per line.
    fn big_template(lines: usize) -> String {
        (1..=lines)
            .map(|i| {
                format!("s{i} {{{{vars.h}}}} {{{{#if vars.f}}}}up{{{{else}}}}down{{{{/if}}}}\n")
            })
            .collect()
    }

    #[test]
    fn a_large_template_renders_piece_by_piece_as_if_whole() {
        let text = big_template(6_000);
        assert!(text.len() > LARGE_TEMPLATE);
        assert!(pieces::split(&text, PIECE).unwrap().len() > 1);
        let (_d, mut r) = setup(&[("big.hbs", &text)]);
        let ctx = json!({"vars": {"h": "x", "f": true}});
        let expected: String = (1..=6_000).map(|i| format!("s{i} x up\n")).collect();
        assert_eq!(r.render("big.hbs", &ctx).unwrap(), expected);
        // Rendered again (a second file from one template) from the kept source.
        assert_eq!(r.render("big.hbs", &ctx).unwrap(), expected);
    }

    #[test]
    fn an_error_in_a_later_piece_names_its_line_in_the_whole_template() {
        let mut text = big_template(6_000);
        text.push_str("tail {{vars.port}}\n");
        let (_d, mut r) = setup(&[("big.hbs", &text)]);
        let e = r
            .render("big.hbs", &json!({"vars": {"h": "x", "f": true}}))
            .unwrap_err();
        assert_eq!(
            e.headline(),
            "templates/big.hbs:6001:6: missing variable 'vars.port'"
        );
    }

    #[test]
    fn a_large_template_that_cannot_be_cut_is_compiled_whole() {
        let mut text = String::from("{{#*inline \"p\"}}[{{vars.h}}]{{/inline}}\n");
        text.push_str(&"{{> p}}\n".repeat(34_000));
        assert!(text.len() > LARGE_TEMPLATE);
        let (_d, mut r) = setup(&[("big.hbs", &text)]);
        let ctx = json!({"vars": {"h": "x"}});
        let mut whole = Handlebars::new();
        whole.register_escape_fn(handlebars::no_escape);
        let expected = whole.render_template(&text, &ctx).unwrap();
        assert!(expected.ends_with("[x][x]"), "{}", &expected[..20]);
        assert_eq!(r.render("big.hbs", &ctx).unwrap(), expected);
    }

    #[test]
    fn a_syntax_error_in_a_large_template_is_located_in_the_whole() {
        let mut text = big_template(6_000);
        text.push_str("{{#if vars.f}}\nunclosed\n");
        let (_d, mut r) = setup(&[("big.hbs", &text)]);
        let e = r.render("big.hbs", &json!({"vars": {}})).unwrap_err();
        assert!(
            e.headline().starts_with("templates/big.hbs:600"),
            "{}",
            e.headline()
        );
    }

    #[test]
    fn helper_errors_name_the_variable_never_its_value() {
        let (_d, mut r) = setup(&[
            ("j.hbs", "{{join vars.pw \",\"}}"),
            ("i.hbs", "{{indent \"x\" vars.pw}}"),
            ("n.hbs", "{{indent \"x\" 5000}}"),
        ]);
        let ctx = json!({"vars": {"pw": "hunter2"}});
        let e = r.render("j.hbs", &ctx).unwrap_err();
        assert_eq!(
            e.headline(),
            "templates/j.hbs:1:1: helper 'join': 'vars.pw' is a string, expected a list"
        );
        let e = r.render("i.hbs", &ctx).unwrap_err();
        assert_eq!(
            e.headline(),
            "templates/i.hbs:1:1: helper 'indent': 'vars.pw' is a string, expected a number of spaces from 0 to 1000"
        );
        let e = r.render("n.hbs", &ctx).unwrap_err();
        assert!(
            e.headline()
                .ends_with("parameter 2 is a number, expected a number of spaces from 0 to 1000"),
            "{}",
            e.headline()
        );
    }

    #[test]
    fn syntax_error_has_a_location() {
        let (_d, mut r) = setup(&[("x.hbs", "ok\n{{#if a}}\n")]);
        let e = r.render("x.hbs", &json!({})).unwrap_err();
        assert!(
            e.headline().starts_with("templates/x.hbs:"),
            "{}",
            e.headline()
        );
    }
}
