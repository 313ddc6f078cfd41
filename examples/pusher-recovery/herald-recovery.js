// herald-recovery.js: after an unclean disconnect, herald replays what each channel missed.
// Use with unmodified pusher-js 8, or Laravel Echo (reverb/pusher): enableRecovery(echo.connector.pusher).
// Load as <script src> (sets window.HeraldRecovery), import for its effect, or require it.
// See README.md beside it for what herald answers and what the callbacks mean.
(function (root) {
  'use strict';
  function enableRecovery(pusher, options) {
    var opts = options || {}, conn = pusher.connection, seen = {}, previous = null;
    conn.bind('state_change', function (s) {
      if (s.current !== 'connected') return; // runs before pusher-js re-subscribes
      var ask = {}, any = false;
      for (var name in seen) {
        if (!pusher.channel(name)) { delete seen[name]; continue; }
        ask[name] = { received: seen[name].received, resumed: seen[name].resumed };
        seen[name].resuming = true; seen[name].resumed = false; any = true;
      }
      if (previous && any) pusher.send_event('herald:resume', { socket_id: previous, channels: ask });
      previous = conn.socket_id;
    });
    conn.bind('message', function (m) {
      var c = m.channel && (seen[m.channel] = seen[m.channel] || { received: 0 });
      if (m.event === 'herald:resumed' || m.event === 'herald:resume_failed') {
        var ok = m.event === 'herald:resumed', s = seen[m.data.channel];
        if (s) { s.resuming = false; s.resumed = ok; s.received = 0; }
        var cb = ok ? opts.onResumed : opts.onResumeFailed;
        if (cb) cb(m.data.channel, ok ? m.data.replayed : m.data.reason);
      } else if (!c) {
        return;
      } else if (m.event === 'pusher_internal:subscription_succeeded') {
        if (!c.resuming) { c.received = 0; c.resumed = false; }
      } else if (!/^pusher(_internal)?:/.test(m.event)) {
        c.received++;
      }
    });
    return pusher;
  }
  if (typeof module === 'object' && module.exports) module.exports.enableRecovery = enableRecovery;
  root.HeraldRecovery = { enableRecovery: enableRecovery };
})(typeof globalThis !== 'undefined' ? globalThis : this);
