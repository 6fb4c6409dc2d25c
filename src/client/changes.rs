//! `vkv changes`: one page of the change feed (`GET /changes`), one line
//! per change, then the revision to resume after, so that a script can
//! loop. Following the feed is `vkv watch --prefix` (`follow.rs`).

use super::args::{ChangesArgs, Output};
use super::commands::parse;
use super::exit::Failure;
use super::failover::Client;
use super::feed::{self, Page};
use super::http::Request;
use super::output;

pub fn changes(a: &ChangesArgs) -> Result<(), Failure> {
    let mut client = Client::new(&a.connect)?;
    let params = a.limit.map(|n| format!("&limit={n}")).unwrap_or_default();
    let req = Request::get(feed::target(&a.prefix, a.after, &params));
    // Without --after there is nothing to be gone: no 410.
    let r = feed::fetch(&mut client, req, a.after.unwrap_or(0), "read")?;
    let page: Page<'_> = parse(&client, &r.body)?;
    for raw in &page.changes {
        output::line(&feed::line(&client, raw, a.output)?)?;
    }
    let next = page.next_after();
    output::line(&match a.output {
        Output::Text => format!("next_after\t{next}"),
        Output::Json => format!("{{\"revision\":{},\"next_after\":{next}}}", page.revision),
    })
}
