// The dashboard's only script. Every page works without it; it adds the Copy
// button (Clipboard API) and a confirmation before a revoke.
'use strict'

// The one-time secret never outlives its page: a browser that keeps the page for
// its Back button (the back/forward cache) gets it without the secret.
window.addEventListener('pagehide', () => {
  const secret = document.getElementById('secret')
  if (!secret) return
  secret.value = ''
  const panel = secret.closest('.secret-panel')
  if (panel) {
    const gone = document.createElement('p')
    gone.textContent = 'The secret was shown once and is no longer available here.'
    panel.replaceChildren(gone)
  }
})

document.addEventListener('DOMContentLoaded', () => {
  for (const button of document.querySelectorAll('button[data-copy]')) {
    const field = document.getElementById(button.dataset.copy)
    const status = document.getElementById('copy-status')
    if (!field || !navigator.clipboard) continue
    button.hidden = false
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(field.value)
        button.textContent = 'Copied'
        if (status) status.textContent = 'The secret is on your clipboard.'
      } catch {
        field.select()
        if (status) status.textContent = 'Copying was blocked: the secret is selected, press Ctrl+C or ⌘C.'
      }
    })
  }

  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault()
        return
      }
      // Confirmed here: skip the confirmation page.
      const confirmed = document.createElement('input')
      confirmed.type = 'hidden'
      confirmed.name = 'confirm'
      confirmed.value = 'yes'
      form.appendChild(confirmed)
    })
  }
})
