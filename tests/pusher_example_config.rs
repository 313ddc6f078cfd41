//! examples/pusher/herald.toml (several Pusher apps with limits) must stay a file herald accepts.

use herald::config::FileConfig;

#[test]
fn the_pusher_example_parses() {
    let text = include_str!("../examples/pusher/herald.toml");
    toml::from_str::<FileConfig>(text).expect("examples/pusher/herald.toml is valid");
}
