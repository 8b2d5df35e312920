// Where Debian's Chromium is and the flags it needs on this machine, for every driver.
export const CHROMIUM = process.env.RUM_CHROMIUM || '/usr/bin/chromium'

// Without these, Chromium tries to reach Google services at start-up and, on a
// machine with no route out, hangs waiting for them.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
