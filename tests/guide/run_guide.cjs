// Runs the integration guide's frontend code against a live server, as a React app would.
//
//   node run_guide.cjs SCENARIO RESULT.json     (SERVER_URL, GUIDE_* inputs in the environment)
//
// frontend/backendApi.ts and frontend/useWebSocket.ts are the guide's code blocks, verbatim
// (test_guide_frontend.py checks them against the guide). They are compiled by TypeScript's own
// transpiler (type stripping, ES modules -> CommonJS) with one change: the guide's hard-coded
// http://localhost:8000 / ws://localhost:8000 becomes the test server's address. The hook runs
// inside real React (react-test-renderer renders a component that calls it); node < 22 has no
// global WebSocket, so the `ws` package (the browser API) stands in for the browser's.
'use strict'

const fs = require('fs')
const path = require('path')
const Module = require('module')
const ts = require('typescript')

if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = require('ws')

const SERVER = process.env.SERVER_URL
const [scenario, resultFile] = process.argv.slice(2)

function load (name) {
  const file = path.join(__dirname, 'frontend', `${name}.ts`)
  const source = fs.readFileSync(file, 'utf8')
    .replaceAll('http://localhost:8000', SERVER)
    .replaceAll('ws://localhost:8000', SERVER.replace(/^http/, 'ws'))
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true
    },
    fileName: file
  })
  const compiled = new Module(file, module)
  compiled.filename = file
  compiled.paths = module.paths
  compiled._compile(outputText, file)
  return compiled.exports
}

async function until (what, check, ms = 15000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const value = check()
    if (value) return value
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

// An axios error becomes data the test can read (status and body), not a crash.
async function call (promise) {
  try {
    return { ok: true, data: await promise }
  } catch (error) {
    if (!error.response) throw error
    return { ok: false, status: error.response.status, data: error.response.data }
  }
}

async function api () {
  const { backendApi } = load('backendApi')
  const name = process.env.GUIDE_USERNAME
  const out = {}
  out.register = await call(backendApi.register(name, `${name}@example.com`, 'password123'))
  out.login = await call(backendApi.login(name, 'password123'))
  out.me = await call(backendApi.getCurrentUser())
  const now = Date.now()
  const conversation = {
    id: `conv_${name}`,
    title: '新对话',
    messages: [],
    createdAt: now,
    updatedAt: now,
    model: 'gpt-3.5-turbo',
    userId: out.me.data.id
  }
  out.created = await call(backendApi.createConversation(conversation))
  out.listed = await call(backendApi.getConversations())
  out.updated = await call(backendApi.updateConversation(conversation.id, {
    ...conversation,
    title: '关于React的讨论',
    systemPrompt: '你是一个AI助手',
    messages: [{ id: 'm1', content: '你好', role: 'user', timestamp: now }],
    updatedAt: Date.now()
  }))
  // The guide's component: sendMessage with its defaults (model gpt-3.5-turbo).
  out.chat = await call(backendApi.sendMessage([
    { id: '1', content: '你好', role: 'user', timestamp: Date.now() }
  ]))
  out.stats = await call(backendApi.getStats())
  out.deleted = await call(backendApi.deleteConversation(conversation.id))
  out.listedAfter = await call(backendApi.getConversations())
  out.loginWrong = await call(backendApi.login(name, 'wrong-password'))
  return out
}

// One mounted component calling the hook: a browser tab of the guide's app.
function mountTab (useWebSocket, userId) {
  const React = require('react')
  const TestRenderer = require('react-test-renderer')
  const tab = { hook: null, renderer: null }
  function ChatComponent () {
    tab.hook = useWebSocket(userId)
    return null
  }
  TestRenderer.act(() => {
    tab.renderer = TestRenderer.create(React.createElement(ChatComponent))
  })
  tab.unmount = () => TestRenderer.act(() => tab.renderer.unmount())
  tab.has = (type) => tab.hook.messages.find((m) => m.type === type)
  return tab
}

// The guide's hook has no token: the first message authenticates (the contract's
// `{"type":"auth","token"}`), sent with the hook's own sendMessage.
async function connect (useWebSocket, userId, token) {
  const tab = mountTab(useWebSocket, userId)
  await until('isConnected', () => tab.hook.isConnected)
  tab.hook.sendMessage({ type: 'auth', token })
  await until('auth_ok', () => tab.has('auth_ok') || tab.has('error'))
  return tab
}

async function hook () {
  const { useWebSocket } = load('useWebSocket')
  const userId = process.env.GUIDE_USER_ID
  const token = process.env.GUIDE_TOKEN
  const out = {}
  const tab = await connect(useWebSocket, userId, token)
  tab.hook.sendMessage({ type: 'ping' })
  await until('pong', () => tab.has('pong'))
  tab.hook.sendChat('你好，这是一条实时消息')
  await until('chat_complete', () => tab.has('chat_complete') || tab.has('error'))
  out.messages = tab.hook.messages
  out.connectedBeforeUnmount = tab.hook.isConnected
  tab.unmount()
  return out
}

async function typing () {
  const { useWebSocket } = load('useWebSocket')
  const userId = process.env.GUIDE_USER_ID
  const token = process.env.GUIDE_TOKEN
  const first = await connect(useWebSocket, userId, token)
  const second = await connect(useWebSocket, userId, token)
  first.hook.sendTyping() // the guide's bare {"type":"typing"}
  const out = { delivered: null, first: null, second: null }
  try {
    await until('user_typing on the other tab', () => second.has('user_typing'), 5000)
    out.delivered = second.has('user_typing')
  } catch (error) {
    out.error = String(error)
  }
  await new Promise((resolve) => setTimeout(resolve, 300)) // an error answer would be here now
  out.first = first.hook.messages
  out.second = second.hook.messages
  first.unmount()
  second.unmount()
  return out
}

const scenarios = { api, hook, typing }

scenarios[scenario]().then((out) => {
  fs.writeFileSync(resultFile, JSON.stringify(out, null, 2))
  process.exit(0) // the hook's 30 s ping interval would keep node alive
}, (error) => {
  console.error(error)
  process.exit(1)
})
