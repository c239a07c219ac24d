//! `Routes`: how every module of the API mounts its routes. One call per
//! (path, method, handler) both registers the route on an actix scope and
//! records it in a table, so [`super::route_table`] lists exactly what the
//! router serves: `openapi.rs`'s test compares that table with the OpenAPI
//! document, and neither can grow a route the other lacks. Paths use
//! actix's `{name}` segments, which are also OpenAPI's.

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, Responder, Route, Scope};

use super::resource;

/// The routes of one scope (`/sessions`, `/health`, …), by path, in the
/// order they were added (actix matches resources in that order).
pub struct Routes {
    prefix: &'static str,
    resources: Vec<(&'static str, Vec<(Method, Route)>)>,
}

impl Routes {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            resources: Vec::new(),
        }
    }

    /// Serves `method` on `path` (below the prefix) with `handler`.
    pub fn at<F, Args>(mut self, path: &'static str, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::method(method.clone()).to(handler);
        match self.resources.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push((method, route)),
            None => self.resources.push((path, vec![(method, route)])),
        }
        self
    }

    /// Every (method, full path) served, in mounting order.
    pub fn table(&self) -> Vec<(Method, String)> {
        self.resources
            .iter()
            .flat_map(|(path, routes)| {
                routes
                    .iter()
                    .map(move |(m, _)| (m.clone(), format!("{}{path}", self.prefix)))
            })
            .collect()
    }

    /// The actix scope: one resource per path (unmatched methods get a
    /// JSON 405), each with its routes.
    pub fn scope(self) -> Scope {
        let mut scope = web::scope(self.prefix);
        for (path, routes) in self.resources {
            let methods: Vec<Method> = routes.iter().map(|(m, _)| m.clone()).collect();
            let mut r = resource(path, &methods);
            for (_, route) in routes {
                r = r.route(route);
            }
            scope = scope.service(r);
        }
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok() -> &'static str {
        "ok"
    }

    #[test]
    fn the_table_lists_each_method_of_each_path_under_the_prefix() {
        let routes = Routes::new("/x")
            .at("", Method::GET, ok)
            .at("/{id}", Method::GET, ok)
            .at("", Method::POST, ok);
        assert_eq!(
            routes.table(),
            vec![
                (Method::GET, "/x".to_owned()),
                (Method::POST, "/x".to_owned()),
                (Method::GET, "/x/{id}".to_owned()),
            ]
        );
    }

    #[actix_rt::test]
    async fn the_scope_serves_what_the_table_lists_and_refuses_other_methods() {
        use actix_web::test::{call_service, init_service, TestRequest};
        let app = init_service(
            actix_web::App::new().service(
                Routes::new("/x")
                    .at("", Method::GET, ok)
                    .at("", Method::POST, ok)
                    .scope(),
            ),
        )
        .await;
        for method in [Method::GET, Method::POST] {
            let req = TestRequest::default().method(method).uri("/x").to_request();
            assert_eq!(call_service(&app, req).await.status(), 200);
        }
        let req = TestRequest::delete().uri("/x").to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
    }
}
