import type { Provider } from '../providers/schema.js';

/** Server-rendered Connect page: small, accessible, no build step, no secret ever in the markup. */

export const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const styles = `
:root{color-scheme:light dark;--fg:#1b1d21;--muted:#5b616e;--bg:#fff;--card:#f5f6f8;--accent:#3b5bdb;--danger:#c92a2a;--ok:#2b8a3e}
@media (prefers-color-scheme:dark){:root{--fg:#e9ecef;--muted:#adb5bd;--bg:#16181d;--card:#22252b;--accent:#748ffc;--danger:#ff8787;--ok:#69db7c}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:28rem;margin:0 auto;padding:1.5rem 1rem}h1{font-size:1.35rem;margin:.25rem 0 1rem}p{color:var(--muted)}
ul{list-style:none;padding:0;margin:0;display:grid;gap:.5rem}
a.item,button.item{display:flex;align-items:center;gap:.75rem;width:100%;padding:.75rem;border-radius:.6rem;background:var(--card);color:var(--fg);text-decoration:none;border:1px solid transparent;font:inherit;text-align:left;cursor:pointer}
a.item:hover,a.item:focus-visible{border-color:var(--accent)}
.logo{flex:none;width:2.25rem;height:2.25rem;border-radius:.5rem;display:grid;place-items:center;font-weight:700;color:#fff;background:var(--accent)}
.meta{font-size:.85rem;color:var(--muted)}label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input{width:100%;padding:.65rem .75rem;border-radius:.5rem;border:1px solid var(--muted);background:var(--bg);color:var(--fg);font:inherit}
input:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.hint{font-size:.85rem;color:var(--muted);margin:.25rem 0 0}
button.primary{margin-top:1.25rem;width:100%;padding:.75rem;border:0;border-radius:.6rem;background:var(--accent);color:#fff;font:inherit;font-weight:600;cursor:pointer}
.alert{padding:.75rem 1rem;border-radius:.6rem;background:var(--card);border-left:4px solid var(--danger)}
.ok{border-left-color:var(--ok)}.back{display:inline-block;margin-top:1rem;color:var(--accent)}`;

/** The per-response CSP nonces (from @fastify/helmet) for the page's one style and one script element. */
export interface Nonces {
  script: string;
  style: string;
}

function page(title: string, body: string, nonce: Nonces, script = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${escapeHtml(title)}</title><style nonce="${escapeHtml(nonce.style)}">${styles}</style></head>
<body><main>${body}</main>${script ? `<script nonce="${escapeHtml(nonce.script)}">${script}</script>` : ''}</body></html>`;
}

const logo = (name: string) => `<span class="logo" aria-hidden="true">${escapeHtml(name.slice(0, 1).toUpperCase())}</span>`;

export function listPage(items: { key: string; name: string; authMode: string }[], nonce: Nonces): string {
  const list = items.length
    ? `<ul>${items
        .map(
          (i) =>
            `<li><a class="item" href="/connect/i/${encodeURIComponent(i.key)}">${logo(i.name)}<span><span>${escapeHtml(i.name)}</span><br><span class="meta">${
              i.authMode === 'OAUTH2' ? 'Sign in with your account' : 'Enter your credentials'
            }</span></span></a></li>`,
        )
        .join('')}</ul>`
    : '<p>There is nothing to connect here yet.</p>';
  return page('Connect an account', `<h1>Connect an account</h1><p>Choose the service you want to connect.</p>${list}`, nonce);
}

export interface FormField {
  name: string;
  label: string;
  type: 'text' | 'password';
  hint?: string;
  pattern?: string;
  required: boolean;
  value?: string;
}

/** Credential fields per auth mode, plus the provider's connection-config fields. */
export function formFields(provider: Provider, configFields: string[], typed: Record<string, string> = {}): FormField[] {
  const config = configFields.map((name): FormField => {
    const def = provider.connection_config![name]!;
    return {
      name,
      label: def.title,
      type: 'text',
      hint: def.description ?? `For example ${def.example}`,
      pattern: def.pattern,
      required: !def.optional,
      value: typed[name],
    };
  });
  switch (provider.auth_mode) {
    case 'API_KEY':
      return [...config, { name: 'api_key', label: 'API key', type: 'password', required: true }];
    case 'BASIC':
      return [
        ...config,
        { name: 'username', label: 'Username', type: 'text', required: true, value: typed.username },
        { name: 'password', label: 'Password', type: 'password', required: false },
      ];
    case 'OAUTH2_CC':
      return [
        ...config,
        { name: 'client_id', label: 'Client ID', type: 'text', required: false, value: typed.client_id },
        { name: 'client_secret', label: 'Client secret', type: 'password', required: false },
      ];
    default:
      return config;
  }
}

export function formPage(
  p: { key: string; name: string; provider: Provider; fields: FormField[]; error?: { message: string; field?: string } },
  nonce: Nonces,
): string {
  const inputs = p.fields
    .map((f) => {
      const invalid = p.error?.field === f.name;
      return `<label for="f-${f.name}">${escapeHtml(f.label)}</label>
<input id="f-${f.name}" name="${f.name}" type="${f.type}"${f.required ? ' required' : ''}${f.pattern ? ` pattern="${escapeHtml(f.pattern)}"` : ''}${
        f.value ? ` value="${escapeHtml(f.value)}"` : ''
      } autocomplete="off" spellcheck="false"${invalid ? ' aria-invalid="true" aria-describedby="form-error"' : f.hint ? ` aria-describedby="h-${f.name}"` : ''}>
${f.hint ? `<p class="hint" id="h-${f.name}">${escapeHtml(f.hint)}</p>` : ''}`;
    })
    .join('');
  const error = p.error ? `<div class="alert" role="alert" id="form-error">${escapeHtml(p.error.message)}</div>` : '';
  const action = p.provider.auth_mode === 'OAUTH2' ? 'Continue' : 'Connect';
  return page(
    `Connect ${p.name}`,
    `${logo(p.name)}<h1>Connect ${escapeHtml(p.name)}</h1>${error}
<form method="post" action="/connect/i/${encodeURIComponent(p.key)}" novalidate>${inputs}<button class="primary" type="submit" id="connect-submit">${action}</button></form>
<a class="back" href="/connect">Back</a>`,
    nonce,
  );
}

/**
 * Tells the opener (popup mode) what happened, only at the allowed origin. On success the popup
 * closes itself (or the tab follows the redirect); an error stays on screen to be read.
 */
function resultScript(
  message: Record<string, unknown>,
  origin: string | null,
  redirect: string | null,
  closeAfterMs: number | null,
): string {
  const json = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');
  return `(function(){var m=${json(message)};var o=${json(origin)};
if(window.opener&&o){try{window.opener.postMessage(m,o)}catch(e){}}
var r=${json(redirect)};if(r){setTimeout(function(){window.location.assign(r)},400)}
else if(window.opener&&${json(closeAfterMs)}){setTimeout(function(){window.close()},${closeAfterMs ?? 0})}})();`;
}

export function successPage(
  p: {
    providerName: string;
    connectionId: string;
    providerConfigKey: string;
    isReconnect: boolean;
    origin: string | null;
    redirect: string | null;
  },
  nonce: Nonces,
): string {
  const message = {
    type: 'terapi:connect',
    event: 'connection_created',
    connection_id: p.connectionId,
    provider_config_key: p.providerConfigKey,
    is_reconnect: p.isReconnect,
  };
  return page(
    'Connected',
    `<h1>Connected</h1><div class="alert ok" role="status" id="result" data-connection-id="${escapeHtml(p.connectionId)}"><strong>${escapeHtml(p.providerName)} is connected.</strong><br>You can close this window.</div>`,
    nonce,
    resultScript(message, p.origin, p.redirect, 1500),
  );
}

const errorTitles: Record<string, string> = {
  expired: 'This link has expired',
  denied: 'Access was not granted',
  not_allowed: 'Not available',
  not_configured: 'Not set up yet',
  invalid_input: 'Check your input',
  invalid_credentials: 'Invalid credentials',
  provider_error: 'Something went wrong',
  internal: 'Something went wrong',
};

export function errorPage(p: { kind: string; message: string; origin: string | null; back: string | null }, nonce: Nonces): string {
  const links = [
    p.kind === 'expired' ? '' : '<a class="back" href="/connect">Try again</a>',
    p.back ? ` <a class="back" href="${escapeHtml(p.back)}" id="return">Return to the application</a>` : '',
  ].join('');
  return page(
    errorTitles[p.kind] ?? 'Something went wrong',
    `<h1>${escapeHtml(errorTitles[p.kind] ?? 'Something went wrong')}</h1><div class="alert" role="alert" id="result" data-error="${escapeHtml(p.kind)}">${escapeHtml(p.message)}</div>
${links}`,
    nonce,
    resultScript({ type: 'terapi:connect', event: 'error', error_type: p.kind, message: p.message }, p.origin, null, null),
  );
}
