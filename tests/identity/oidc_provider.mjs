// A real OpenID Connect provider (panva/oidc-provider, the certified Node implementation) for
// tests/identity: discovery, JWKS, authorization code + PKCE, ID tokens, userinfo.
//
//   node oidc_provider.mjs   (env: OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI)
//
// There is no login page: the test names the person in `login_hint` on the authorization URL
// as `<subject>|<email>|<1 if the email is verified, else 0>`, and the interaction signs that
// person in and grants the requested scopes at once. Prints "ready" when listening.
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;

function person(accountId) {
  const [subject, email, verified] = accountId.split('|');
  return {
    accountId,
    async claims() {
      return {
        sub: accountId,
        email: email || undefined,
        email_verified: verified === '1',
        preferred_username: subject,
        name: subject,
      };
    },
  };
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: [process.env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
  },
  pkce: { required: () => true },
  findAccount: async (ctx, id) => person(id),
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['tests-identity-cookie-key'] },
});

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = details.params.login_hint;
  if (!accountId) {
    ctx.status = 400;
    ctx.body = 'login_hint names the test person';
    return undefined;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
  ctx.redirect(redirectTo);
  return undefined;
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
