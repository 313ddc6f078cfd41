//! PLACEHOLDER: the pusher edge is being written; replace this file.

use crate::server::State;
use warp::filters::BoxedFilter;
use warp::Filter;

pub fn routes(_state: State) -> BoxedFilter<(warp::reply::Response,)> {
    warp::any()
        .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
        .boxed()
}
