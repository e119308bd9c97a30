// src/hooks/useWebSocket.ts
import { useEffect, useRef, useState } from 'react'

interface WebSocketMessage {
  type: string
  content?: string
  user_id?: string
}

export const useWebSocket = (userId: string) => {
  const [isConnected, setIsConnected] = useState(false)
  const [messages, setMessages] = useState<WebSocketMessage[]>([])
  const wsRef = useRef<WebSocket | null>(null)

  useEffect(() => {
    const ws = new WebSocket(`ws://localhost:8000/ws/${userId}`)

    ws.onopen = () => {
      setIsConnected(true)
      console.log('WebSocket connected')

      // ��心跳
      const pingInterval = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify({ type: 'ping' }))
        }
      }, 30000)

      ws.onclose = () => {
        clearInterval(pingInterval)
      }
    }

    ws.onmessage = (event) => {
      const data = JSON.parse(event.data)
      setMessages((prev) => [...prev, data])
    }

    ws.onerror = (error) => {
      console.error('WebSocket error:', error)
    }

    ws.onclose = () => {
      setIsConnected(false)
      console.log('WebSocket disconnected')
    }

    wsRef.current = ws

    return () => {
      ws.close()
    }
  }, [userId])

  const sendMessage = (message: WebSocketMessage) => {
    if (wsRef.current?.readyState === WebSocket.OPEN) {
      wsRef.current.send(JSON.stringify(message))
    }
  }

  const sendChat = (content: string) => {
    sendMessage({ type: 'chat', content })
  }

  const sendTyping = () => {
    sendMessage({ type: 'typing' })
  }

  return {
    isConnected,
    messages,
    sendChat,
    sendTyping,
    sendMessage
  }
}
