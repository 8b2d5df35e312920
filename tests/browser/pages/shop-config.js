// Settings of the shop pages: set by the test driver before any script runs
// (window.SHOP_CONFIG), or read from the page's query string when the pages
// are opened by hand: /shop-sdk.html?intake=http://127.0.0.1:8080
;(function () {
  const query = new URLSearchParams(location.search)
  const given = window.SHOP_CONFIG || {}
  window.SHOP = {
    intake: given.intake || query.get('intake') || 'http://127.0.0.1:8080',
    clientToken: given.clientToken || query.get('clientToken') || 'pub-shop-local',
    applicationId: given.applicationId || query.get('applicationId') || 'shop',
    env: given.env || query.get('env') || 'local',
    version: given.version || query.get('version') || '1.4.2',
  }
})()
