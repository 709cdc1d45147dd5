//! A templated file's content made again when its bytes are needed (a diff, validate, the
//! write), so no plan holds rendered content. Every file of a plan shares one
//! [`Templates`]: the renderer and the run's `{facts, vars}`. A plan read back from the
//! cache builds them only when the first file needs its bytes, so an unchanged run parses
//! no template at all.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::render::{Renderer, SharedRenderer};
use crate::resource::content::{Produce, Recipe, Revive};
use crate::role::vars;

/// What every templated file of one plan renders with.
pub struct Templates {
    /// `templates/` of the source tree.
    dir: PathBuf,
    renderer: OnceLock<Result<SharedRenderer, String>>,
    /// The run's `{facts, vars}` as JSON text, for a plan read back (parsed on first use).
    context_json: Option<String>,
    context: OnceLock<Result<Arc<handlebars::Context>, String>>,
}

impl Templates {
    /// The renderer and context a plan is being built with.
    pub fn ready(dir: PathBuf, renderer: SharedRenderer, context: &Value) -> Templates {
        let context = handlebars::Context::wraps(context).expect("JSON");
        Templates {
            dir,
            renderer: OnceLock::from(Ok(renderer)),
            context_json: None,
            context: OnceLock::from(Ok(Arc::new(context))),
        }
    }

    /// Templates in `dir` and the context `context_json`, each set up on first use.
    pub(crate) fn lazy(dir: PathBuf, context_json: String) -> Templates {
        Templates {
            dir,
            renderer: OnceLock::new(),
            context_json: Some(context_json),
            context: OnceLock::new(),
        }
    }

    /// The run's `{facts, vars}` as JSON text, as a stored plan keeps it.
    pub(crate) fn context_json(&self) -> Result<String, String> {
        if let Some(json) = &self.context_json {
            return Ok(json.clone());
        }
        let context = self.context()?;
        serde_json::to_string(context.data()).map_err(|e| e.to_string())
    }

    fn renderer(&self) -> Result<&SharedRenderer, String> {
        self.renderer
            .get_or_init(|| Ok(Arc::new(Mutex::new(Renderer::new(&self.dir)))))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn context(&self) -> Result<&Arc<handlebars::Context>, String> {
        self.context
            .get_or_init(|| {
                let json = self.context_json.as_deref().unwrap_or("{}");
                let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
                let context = handlebars::Context::from(value);
                Ok(Arc::new(context))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Makes each stored file's producer again, sharing these templates; each template
    /// name is held once.
    pub(crate) fn revive(self: &Arc<Templates>) -> Revive {
        let templates = self.clone();
        let names: Mutex<TemplateNames> = Mutex::default();
        Box::new(move |recipe: Recipe| {
            let name = names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .shared(&recipe.template);
            Arc::new(TemplateJob {
                templates: templates.clone(),
                name,
                vars: recipe.vars.map(Into::into),
            }) as Arc<dyn Produce>
        })
    }
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "templates in {}", self.dir.display())
    }
}

/// Each template name once, shared by every file rendered from it.
#[derive(Default)]
pub(crate) struct TemplateNames(HashSet<Arc<str>>);

impl TemplateNames {
    /// `name`'s one shared copy.
    pub fn shared(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(shared.clone());
        shared
    }
}

/// One template with one file's vars.
pub(crate) struct TemplateJob {
    templates: Arc<Templates>,
    name: Arc<str>,
    /// The file's own vars, merged over the run's vars at each render; as JSON text,
    /// planned or stored alike, parsed only if the file is rendered again. (A 10,000-file
    /// role's vars as values, one small allocation per key and string, held about three
    /// times the memory.)
    vars: Option<Box<str>>,
}

impl TemplateJob {
    /// `name` rendered with the shared `templates` and this file's own vars `own`, and the
    /// job that renders it again; the vars are kept as text.
    pub(crate) fn render_new(
        templates: Arc<Templates>,
        name: Arc<str>,
        own: Map<String, Value>,
    ) -> (TemplateJob, Result<String, crate::diagnostics::Diagnostic>) {
        let vars = match serde_json::to_string(&own) {
            _ if own.is_empty() => None,
            Ok(json) => Some(json.into()),
            Err(e) => {
                let message = format!("vars of {name}: {e}");
                let job = TemplateJob {
                    templates,
                    name,
                    vars: None,
                };
                return (job, Err(crate::diagnostics::Diagnostic::new(message)));
            }
        };
        let job = TemplateJob {
            templates,
            name,
            vars,
        };
        let text = job.render_with(Some(own).filter(|o| !o.is_empty()));
        (job, text)
    }

    /// The rendered text, or the template's located error.
    pub fn render(&self) -> Result<String, crate::diagnostics::Diagnostic> {
        let own = match &self.vars {
            None => None,
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                crate::diagnostics::Diagnostic::new(format!("stored vars of {}: {e}", self.name))
            })?),
        };
        self.render_with(own)
    }

    fn render_with(
        &self,
        own: Option<Map<String, Value>>,
    ) -> Result<String, crate::diagnostics::Diagnostic> {
        use crate::diagnostics::Diagnostic;
        let context = self.templates.context().map_err(Diagnostic::new)?;
        let mut renderer = self
            .templates
            .renderer()
            .map_err(Diagnostic::new)?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(own) = own else {
            return renderer.render_context(&self.name, context);
        };
        // Only the vars are copied and merged; the renderer keeps the facts.
        let mut merged = context.data()["vars"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        vars::merge(&mut merged, &own);
        renderer.render_with_vars(&self.name, context, Value::Object(merged))
    }
}

impl std::fmt::Debug for TemplateJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template {}", self.name)
    }
}

impl Produce for TemplateJob {
    fn produce(&self) -> Result<Vec<u8>, String> {
        self.render()
            .map(String::into_bytes)
            .map_err(|d| d.to_string())
    }

    fn recipe(&self) -> Option<Recipe> {
        Some(Recipe {
            template: self.name.to_string(),
            vars: self.vars.as_deref().map(str::to_owned),
        })
    }
}
